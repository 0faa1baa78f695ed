"""The runtimes a Recognizer runs a model with: eager PyTorch (fp32, or dynamic
int8), TorchScript and ONNX Runtime, and the reading of exported files. The only
module that reads the exported file formats (``export`` writes them).

Every runner takes a raw waveform batch ``(B, clip_samples)`` float32 at the
checkpoint's sample rate (MFCC inside the model) and returns ``logits (B,
n_labels)`` and, when asked, ``mfcc (B, frames, n_mfcc)``, as numpy. Large
batches run in chunks of ``CHUNK`` clips: a chunk's spectrograms stay in the
cache, so throughput does not fall as batches grow. ONNX Runtime runs its
chunks side by side, one single-threaded run per core (its intra-op threads
gain little on this model's many small operators); an int8 model runs one clip
a run (its activations are quantized per run), so batching never changes a
clip's answer.
"""

from __future__ import annotations

import json
import math
import os
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from .checkpoint import Checkpoint, checkpoint_from_dict
from .errors import CheckpointError, SpeechLSTMError
from .model import KeywordBiLSTM

META_KEY = "speechlstm"  # ONNX metadata entry holding the checkpoint's configs, labels, metrics
TS_EXTRA = "speechlstm.json"  # TorchScript extra file holding the same
CHUNK = 32  # clips per PyTorch call in a large batch (16-64 are alike here; 256 in one call was 2x slower)
ORT_CHUNK = 16  # clips per ONNX Runtime run
PROBE_ATOL = 1e-4  # how far a cached export's logits on the probe clips may move before it is rebuilt


class Runner(Protocol):
    """waves (B, S) float32 -> (logits (B, n_labels), mfcc (B, T, n_mfcc) or None) as numpy."""

    kind: str

    def __call__(self, waves: np.ndarray, features: bool = False) -> tuple[np.ndarray, np.ndarray | None]: ...


class WithFeatures(nn.Module):
    """The model with its features as a second output: what gets exported."""

    def __init__(self, model: KeywordBiLSTM):
        super().__init__()
        self.model = model

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.model.features(wave)  # (B, T, n_mfcc)
        return self.model.classify(feats), feats  # (B, n_labels), (B, T, n_mfcc)


def quantize_int8(model: KeywordBiLSTM) -> nn.Module:
    """Dynamic int8 quantization of the LSTM and Linear layers (weights int8,
    activations quantized per batch at run time). CPU only; MFCC and conv stay fp32."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao's eager API: still the one for LSTMs
        return torch.ao.quantization.quantize_dynamic(model.cpu().eval(), {nn.LSTM, nn.Linear},
                                                      dtype=torch.qint8)


def _chunked(run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]], waves: np.ndarray,
             chunk: int = CHUNK, pool: ThreadPoolExecutor | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    if len(waves) <= chunk:
        return run(waves)
    pieces = [waves[i : i + chunk] for i in range(0, len(waves), chunk)]
    parts = list(pool.map(run, pieces)) if pool is not None else [run(p) for p in pieces]
    feats = None if parts[0][1] is None else np.concatenate([f for _, f in parts])
    return np.concatenate([z for z, _ in parts]), feats


class TorchRunner:
    """Eager (fp32 or int8) model, or a TorchScript ``WithFeatures`` module."""

    def __init__(self, module: nn.Module, device: torch.device, kind: str):
        self.module, self.device, self.kind = module.to(device).eval(), device, kind
        self._eager = isinstance(module, WithFeatures)

    def __call__(self, waves: np.ndarray, features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        return _chunked(lambda w: self._run(w, features), waves)

    @torch.inference_mode()
    def _run(self, waves: np.ndarray, features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        x = torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32)).to(self.device)
        if self._eager and not features:  # logits only: no second output to copy
            return self.module.model(x).float().cpu().numpy(), None
        logits, feats = self.module(x)
        return logits.float().cpu().numpy(), feats.float().cpu().numpy() if features else None


def ort_session(model: str | bytes) -> Any:
    """A single-threaded ONNX Runtime session on the CPU: the one every run of an exported
    model uses, and the one its probe logits are recorded with at export. Its fp32 matrix
    products sum in an order that depends on the thread count, and int8's activation
    rounding can turn that into 1e-3 on a logit: recorded with other threads, a sound
    export would fail its own check."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise SpeechLSTMError("running an ONNX model needs onnxruntime: "
                              "pip install 'speechlstm[onnx]'") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        name = model if isinstance(model, str) else "the exported model"
        raise CheckpointError(f"{name}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from None


class OnnxRunner:
    """An ONNX Runtime session run single-threaded; a batch's chunks run on
    ``threads`` cores at once (default: every core)."""

    def __init__(self, path: Path, threads: int | None = None):
        self.session = ort_session(str(path))
        self.threads = max(1, threads or os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(self.threads, "speechlstm-ort") if self.threads > 1 else None
        self.kind = "onnx"
        # dynamic int8 quantizes activations with one scale per run: a clip's logits would
        # move (by up to 0.03 in probability on test_mini) with the other clips of its batch
        self.per_clip = False

    def __call__(self, waves: np.ndarray, features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        names = ["logits", "mfcc"] if features else ["logits"]

        def run(w: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
            out = self.session.run(names, {"waveform": np.ascontiguousarray(w, dtype=np.float32)})
            return out[0], out[1] if features else None

        # every core gets work; int8 runs one clip at a time, so that a clip's answer never
        # depends on the clips batched with it
        chunk = 1 if self.per_clip else min(ORT_CHUNK, math.ceil(len(waves) / self.threads))
        return _chunked(run, waves, max(1, chunk), self._pool)


def softmax(logits: np.ndarray) -> np.ndarray:
    """(..., n_labels) logits -> probabilities over the last axis."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def probe_waves(clip_samples: int, sample_rate: int) -> np.ndarray:
    """Two fixed clips (a chirp under noise, a noise burst): what an export records its
    own logits on, so that a cached file can prove it still computes them. (2, S) float32."""
    t = np.arange(clip_samples) / sample_rate
    rng = np.random.default_rng(12345)
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.01 * rng.standard_normal(clip_samples)
    burst = 0.2 * rng.standard_normal(clip_samples) * (np.abs(t - t.mean()) < 0.2)
    return np.stack([chirp, burst]).astype(np.float32)


def check_export(ckpt: Checkpoint, runner: Runner, digest: str) -> None:
    """Raise CheckpointError unless an exported model is the one for ``digest`` and still
    gives the logits it recorded on the probe clips (a damaged or stale cache)."""
    meta = ckpt.provenance.get("export") or {}
    if meta.get("digest") != digest:
        raise CheckpointError(f"{ckpt.source}: exported from another checkpoint or speechlstm version")
    probe = meta.get("probe_logits")
    if not probe:
        raise CheckpointError(f"{ckpt.source}: exported without probe logits")
    got = np.concatenate([runner(w[None])[0] for w in probe_waves(ckpt.features.clip_samples,
                                                                  ckpt.features.sample_rate)])
    if got.shape != np.shape(probe) or not np.allclose(got, probe, atol=PROBE_ATOL, rtol=0):
        raise CheckpointError(f"{ckpt.source}: its outputs differ from the ones recorded at export")


def exported_kind(path: Path) -> str | None:
    """"onnx", "torchscript" or None (a plain checkpoint), from the file's content."""
    if path.suffix == ".onnx":
        return "onnx"
    try:
        with zipfile.ZipFile(path) as z:
            if any(n.endswith(f"extra/{TS_EXTRA}") for n in z.namelist()):
                return "torchscript"
    except (zipfile.BadZipFile, OSError):
        pass
    return None


def load_exported(path: str | os.PathLike, device: torch.device,
                  threads: int | None = None) -> tuple[Checkpoint, Runner]:
    path = Path(path)
    kind = exported_kind(path)
    if kind == "onnx":
        runner = OnnxRunner(path, threads)
        raw = runner.session.get_modelmeta().custom_metadata_map.get(META_KEY)
    elif kind == "torchscript":
        files = {TS_EXTRA: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: not a loadable TorchScript model ({str(e).splitlines()[0]})") from None
        runner, raw = TorchRunner(module, device, "torchscript"), files[TS_EXTRA]
    else:
        raise CheckpointError(f"{path}: not an exported speechlstm model")
    if not raw:
        raise CheckpointError(f"{path}: exported model lacks its '{META_KEY}' metadata")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable metadata ({e})") from None
    ckpt = checkpoint_from_dict(meta, path, weights=False)
    ckpt.provenance["export"] = meta.get("export", {})
    if kind == "onnx" and ckpt.provenance["export"].get("int8"):
        runner.kind, runner.per_clip = "onnx-int8", True
    return ckpt, runner
