"""The checkpoint file format. The only module that knows it.

One file, loadable with ``torch.load(weights_only=True)`` (no pickled code is
ever executed), holding plain types and tensors:

    format      "speechlstm"          version   FORMAT_VERSION
    features    FeatureConfig dict    model     ModelConfig dict
    train       train.TrainConfig dict (a section per module: optim, sampling, augment, windows,
                distill, mining): how the weights were made, never read by inference
    labels      [str, ...]
    state_dict  model weights         metrics   {name: number}
    provenance  {data_dir, split_sizes, seed, epochs, commit, created, ...}
    streaming   StreamConfig dict (optional: the streaming rule calibrated for this model)
    enrollment  {"representation": str, "sources": [str], "negatives": float16 tensor (N, D)}
                (optional: the other words and read speech that enrolled words are fitted against)

A pretrained encoder (``speechlstm pretrain``) is a second, smaller kind of file:

    format      "speechlstm-encoder"  version   FORMAT_VERSION
    features    FeatureConfig dict    model     ModelConfig dict
    pretrain    pretrain.PretrainConfig dict            phones    [str, ...]
    state_dict  the front end, convolution and BiLSTM weights + "phone_head.*"
    metrics     {name: number}        provenance {...}

Enrolled words (``speechlstm enroll``) live in a folder: ``words.json`` (JSON, a third
format: "speechlstm-words", its version, the digest of the embedding model's weights
and a head and threshold per word) beside each word's enrolment clips (``WORD/N.wav``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import FeatureConfig, ModelConfig, StreamConfig, from_dict, to_dict
from .errors import CheckpointError, ConfigError
from .model import KeywordBiLSTM

FORMAT = "speechlstm"
ENCODER_FORMAT = "speechlstm-encoder"
WORDS_FORMAT, WORDS_VERSION, WORDS_FILE = "speechlstm-words", 1, "words.json"
FORMAT_VERSION = 2  # 2: training settings in sections; version 1 files (one flat section) still load
READABLE_VERSIONS = (1, 2)
ENCODER_PREFIXES = ("frontend.", "conv.", "lstm.")  # the weights an encoder file carries into a classifier
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "commands12.pt"
# the shipped embedding model that enrolled words are fitted on (``speechlstm enroll``)
DEFAULT_EMBEDDER = DEFAULT_CHECKPOINT.with_name("embedder.pt")
# Training settings of ideas that were measured and not kept (their figures are in the model card):
# files that carry them still load, and keep them under provenance["retired"]
RETIRED_TRAIN_KEYS = ("extra_hard_share", "sampling.synth_unknowns", "augment.reverb_prob", "augment.reverb_rt60_s",
                      "optim.ema_decay", "windows.place_prob", "windows.cut_prob", "windows.context_prob",
                      "windows.keep_fraction", "windows.unknown_fraction", "windows.join_prob")
# Version 1 kept training settings in one flat section: where each of its keys lives now (section, key)
_V1_SECTIONS = {
    "optim": ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "label_smoothing", "patience", "seed",
              "ema_decay"),
    "sampling": ("silence_ratio", "unknown_ratio", "synth_ratio", "synth_unknowns", "extra_unknown_ratio"),
    "augment": ("noise_prob", "snr_db", "shift_ms", "gain_db", "speed", "reverb_prob", "reverb_rt60_s", "mixup_alpha",
                "time_masks", "time_mask_frames", "freq_masks", "freq_mask_bins"),
    "windows": ("keep_fraction", "unknown_fraction", "join_prob", "talk_ratio"),
}
_V1_KEYS = {**{k: (sec, k) for sec, keys in _V1_SECTIONS.items() for k in keys},
            "stream_place_prob": ("windows", "place_prob"), "stream_cut_prob": ("windows", "cut_prob"),
            "stream_context_prob": ("windows", "context_prob"), "distill_weight": ("distill", "weight"),
            "distill_temperature": ("distill", "temperature"), "talk_hard_share": ("mining", "share"),
            "mine_min_score": ("mining", "min_score"), "task": (None, "task"),
            "validation_pct": (None, "validation_pct"), "windows_per_second": (None, "windows_per_second")}
# a version 1 encoder's pretraining kept timing intact with fixed settings: no speed change, shift or room
_V1_PRETRAIN_AUGMENT = {"speed": 0.0, "shift_ms": 0.0, "reverb_prob": 0.0}


@dataclass
class Checkpoint:
    features: FeatureConfig
    model: ModelConfig
    train: dict[str, Any]  # how it was trained (train.TrainConfig.from_dict reads it back)
    labels: list[str]
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    streaming: StreamConfig = field(default_factory=StreamConfig)  # the decision rule for live audio
    enrollment: dict[str, Any] | None = None  # negatives for enrolled words (see the module docstring)
    source: Path | None = None  # the file it was loaded from (not saved)

    def build_model(self) -> KeywordBiLSTM:
        """A model in eval mode with these weights, on the CPU."""
        net = KeywordBiLSTM(self.features, self.model, len(self.labels))
        try:
            net.load_state_dict(self.state_dict)
        except RuntimeError as e:
            raise CheckpointError(f"weights do not fit the saved model config: {e}") from None
        return net.eval()


@dataclass
class Encoder:
    """A phonetically pretrained encoder: what ``train --init-from`` starts from."""

    features: FeatureConfig
    model: ModelConfig
    pretrain: dict[str, Any]  # how it was pretrained (pretrain.PretrainConfig.from_dict reads it back)
    phones: list[str]
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def encoder_weights(self) -> dict[str, torch.Tensor]:
        return encoder_weights(self.state_dict)


def encoder_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The front end, convolution and BiLSTM of a model's weights: what starts another task's model."""
    return {k: v for k, v in state_dict.items() if k.startswith(ENCODER_PREFIXES)}


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temp file in the same folder, then rename over ``path``:
    a crash mid-save never leaves a broken file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_meta(ckpt: Checkpoint) -> dict[str, Any]:
    """Everything but the weights, JSON-safe: what an exported model carries so
    that a Recognizer can rebuild labels and features from it alone."""
    return {"format": FORMAT, "version": FORMAT_VERSION, "features": to_dict(ckpt.features),
            "model": to_dict(ckpt.model), "train": dict(ckpt.train), "labels": list(ckpt.labels),
            "metrics": dict(ckpt.metrics), "provenance": dict(ckpt.provenance),
            "streaming": to_dict(ckpt.streaming)}


def weights_digest(ckpt: Checkpoint) -> str:
    """sha256 of what a model computes (front end, network, labels, weights), nothing else:
    what enrolled words are bound to (new metrics or a new rule keep them valid)."""
    h = hashlib.sha256(json.dumps([to_dict(ckpt.features), to_dict(ckpt.model), list(ckpt.labels)]).encode())
    return _hash_weights(h, ckpt.state_dict)


def _hash_weights(h: "hashlib._Hash", state_dict: dict[str, torch.Tensor]) -> str:
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def content_digest(ckpt: Checkpoint) -> str:
    """sha256 of everything a checkpoint holds (configs, labels, rule, metrics, weights):
    what names a file derived from it, such as a cached export."""
    h = hashlib.sha256(json.dumps(checkpoint_meta(ckpt), sort_keys=True, default=str).encode())
    return _hash_weights(h, ckpt.state_dict)


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike) -> None:
    weights = {k: v.detach().cpu().contiguous() for k, v in ckpt.state_dict.items()}
    extra = {"enrollment": ckpt.enrollment} if ckpt.enrollment else {}
    atomic_torch_save({**checkpoint_meta(ckpt), "state_dict": weights, **extra}, path)


def safe_load(path: str | os.PathLike) -> Any:
    """torch.load with weights_only=True, every failure turned into CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors and plain "
            f"types (possibly executable code) ({str(e).splitlines()[0]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({str(e).splitlines()[0]})") from None
    except Exception as e:  # noqa: BLE001  arbitrary bytes drive the legacy unpickler into KeyError, IndexError, ...
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {e})") from None


def save_encoder(enc: Encoder, path: str | os.PathLike) -> None:
    weights = {k: v.detach().cpu().contiguous() for k, v in enc.state_dict.items()}
    atomic_torch_save({"format": ENCODER_FORMAT, "version": FORMAT_VERSION, "features": to_dict(enc.features),
                       "model": to_dict(enc.model), "pretrain": dict(enc.pretrain), "phones": list(enc.phones),
                       "state_dict": weights, "metrics": dict(enc.metrics), "provenance": dict(enc.provenance)},
                      path)


def load_encoder(path: str | os.PathLike) -> Encoder:
    """Load and validate a pretrained encoder file."""
    return _encoder_from_dict(safe_load(Path(path)), Path(path))


def _encoder_from_dict(raw: Any, path: Path) -> Encoder:
    if not isinstance(raw, dict) or raw.get("format") != ENCODER_FORMAT:
        hint = " (a trained classifier, not a pretrained encoder)" if isinstance(raw, dict) and \
            raw.get("format") == FORMAT else ""
        raise CheckpointError(f"{path}: not a speechlstm pretrained encoder{hint}")
    if raw.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: encoder format version {raw.get('version')!r}; this speechlstm reads "
                              f"versions {', '.join(map(str, READABLE_VERSIONS))}")
    try:
        pretrain, _ = _sections(raw["pretrain"], raw["version"], path)
        if raw["version"] == 1:
            pretrain["augment"] = {**_V1_PRETRAIN_AUGMENT, **pretrain.get("augment", {})}
        enc = Encoder(from_dict(FeatureConfig, raw["features"]), from_dict(ModelConfig, raw["model"]),
                      pretrain, [str(p) for p in raw["phones"]],
                      raw["state_dict"], dict(raw.get("metrics") or {}), dict(raw.get("provenance") or {}))
    except (KeyError, ConfigError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid pretrained encoder: {e}") from None
    if not enc.encoder_weights():
        raise CheckpointError(f"{path}: the encoder file holds no encoder weights")
    return enc


def load_initial(path: str | os.PathLike) -> tuple[FeatureConfig, ModelConfig, list[str] | None,
                                                 dict[str, torch.Tensor]]:
    """What ``train --init-from`` starts from: a pretrained encoder (its encoder
    weights; no labels) or a trained classifier (all its weights and its labels, to
    fine-tune). Returns (features, model config, labels or None, weights)."""
    raw = safe_load(Path(path))  # read once, whichever kind it is
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        ck = checkpoint_from_dict(raw, Path(path))
        return ck.features, ck.model, list(ck.labels), ck.state_dict
    enc = _encoder_from_dict(raw, Path(path))
    return enc.features, enc.model, None, enc.encoder_weights()


def _sections(train: Any, version: int, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A file's training settings in today's sections, and the retired ones it carried."""
    if not isinstance(train, dict):
        raise CheckpointError(f"{path}: its training settings are not a table")
    out: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in train.items()}
    if version == 1:
        out = {}
        for key, value in train.items():
            if key not in _V1_KEYS and key not in RETIRED_TRAIN_KEYS:
                raise CheckpointError(f"{path}: unknown training setting {key!r} in a version 1 file")
            section, name = _V1_KEYS.get(key, (None, key))
            (out.setdefault(section, {}) if section else out)[name] = value
    retired = {}
    for key in RETIRED_TRAIN_KEYS:
        section, _, name = key.rpartition(".")
        holder = out.get(section) if section else out
        if isinstance(holder, dict) and name in holder:
            retired[key] = holder.pop(name)
    return out, retired


def load_checkpoint(path: str | os.PathLike | None = None) -> Checkpoint:
    """Load and validate a checkpoint (None: the shipped commands12 model)."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    return checkpoint_from_dict(safe_load(path), path)


def checkpoint_from_dict(raw: Any, path: Path, weights: bool = True) -> Checkpoint:
    """Validate a loaded checkpoint dict (``weights=False``: exported-model metadata)."""
    if isinstance(raw, dict) and raw.get("format") == ENCODER_FORMAT:
        raise CheckpointError(f"{path}: a pretrained encoder, not a classifier: fine-tune it first "
                              "(speechlstm train --init-from)")
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a speechlstm checkpoint (no 'format': '{FORMAT}' entry)")
    version = raw.get("version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: checkpoint format version {version!r}; this speechlstm reads versions "
                              f"{', '.join(map(str, READABLE_VERSIONS))}")
    missing = [k for k in ("features", "model", "train", "labels", "state_dict")[: 5 if weights else 4]
               if k not in raw]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    try:
        train, retired = _sections(raw["train"], version, path)
        ckpt = Checkpoint(
            features=from_dict(FeatureConfig, raw["features"]),
            model=from_dict(ModelConfig, raw["model"]),
            train=train,
            labels=[str(x) for x in raw["labels"]],
            state_dict=raw["state_dict"] if weights else {},
            metrics=dict(raw.get("metrics") or {}),
            provenance={**dict(raw.get("provenance") or {}), **({"retired": retired} if retired else {})},
            streaming=from_dict(StreamConfig, raw.get("streaming")),
            enrollment=_enrollment(raw.get("enrollment"), path),
            source=path.resolve(),
        )
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid config in checkpoint: {e}") from None
    if not ckpt.labels:
        raise CheckpointError(f"{path}: checkpoint has no labels")
    return ckpt


def _enrollment(raw: Any, path: Path) -> dict[str, Any] | None:
    if raw is None:
        return None
    neg = raw.get("negatives") if isinstance(raw, dict) else None
    if not isinstance(neg, torch.Tensor) or neg.ndim != 2 or not isinstance(raw.get("representation"), str):
        raise CheckpointError(f"{path}: its enrollment entry needs a representation and a 2-D negatives tensor")
    return {"representation": raw["representation"], "sources": [str(s) for s in raw.get("sources", [])],
            "negatives": neg}


# ------------------------------------------------------------------ enrolled words
@dataclass
class EnrolledWord:
    """One enrolled word: a linear head over the embedding model's representation; it is
    heard when ``weights . z + bias`` clears ``threshold``."""

    name: str
    weights: list[float]
    bias: float
    threshold: float
    clips: list[str]  # its enrolment clips, relative to the words folder
    created: str
    scores: list[float] = field(default_factory=list)  # the enrolment clips' own scores


@dataclass
class Words:
    """A words folder's ``words.json``: which embedding model the heads belong to, and the words."""

    embedder_digest: str
    representation: str
    words: dict[str, EnrolledWord] = field(default_factory=dict)
    folder: Path | None = None  # where it was loaded from (not saved)


def save_words(words: Words, folder: str | os.PathLike) -> Path:
    """Write ``folder/words.json`` atomically (the clips are written by ``enroll``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    body = {"format": WORDS_FORMAT, "version": WORDS_VERSION, "embedder_digest": words.embedder_digest,
            "representation": words.representation,
            "words": {n: {k: v for k, v in vars(w).items() if k != "name"} for n, w in sorted(words.words.items())}}
    path = folder / WORDS_FILE
    fd, tmp = tempfile.mkstemp(prefix=f".{WORDS_FILE}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(body, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_words(folder: str | os.PathLike) -> Words:
    """Read ``folder/words.json``, validating every field."""
    folder = Path(folder)
    path = folder / WORDS_FILE if folder.is_dir() or not folder.suffix else folder
    if not path.is_file():
        raise CheckpointError(f"{path}: no enrolled words here (speechlstm enroll WORD CLIPS... --words {folder})")
    try:
        raw = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a words file ({e})") from None
    if not isinstance(raw, dict) or raw.get("format") != WORDS_FORMAT:
        raise CheckpointError(f"{path}: not a speechlstm words file (no 'format': '{WORDS_FORMAT}' entry)")
    if raw.get("version") != WORDS_VERSION:
        raise CheckpointError(f"{path}: words file version {raw.get('version')!r}; this speechlstm reads "
                              f"version {WORDS_VERSION}")
    try:
        words = {str(n): EnrolledWord(name=str(n), weights=[float(x) for x in w["weights"]], bias=float(w["bias"]),
                                      threshold=float(w["threshold"]), clips=[str(c) for c in w["clips"]],
                                      created=str(w["created"]), scores=[float(x) for x in w.get("scores", [])])
                 for n, w in raw["words"].items()}
        out = Words(str(raw["embedder_digest"]), str(raw["representation"]), words, path.parent)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: invalid words file ({type(e).__name__}: {e})") from None
    sizes = {len(w.weights) for w in words.values()}
    if len(sizes) > 1:
        raise CheckpointError(f"{path}: the words' heads differ in size ({sorted(sizes)})")
    return out
