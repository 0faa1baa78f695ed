"""Configuration dataclasses. Saved inside every checkpoint; the only place
feature and model sizes are defined and derived."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeVar

from .errors import ConfigError

T = TypeVar("T")

# How a checkpoint runs (``Recognizer(runtime=...)``). "auto": on the CPU the fastest one measured
# (README, "Speed"), ONNX Runtime with int8 weights, exported once into the user's cache; on a
# GPU, eager PyTorch. "eager": PyTorch fp32; "int8": PyTorch dynamic int8; "onnx", "onnx-int8".
RUNTIMES = ("auto", "eager", "int8", "onnx", "onnx-int8")
RUNTIME_HELP = ("how the model runs (default auto: on the CPU ONNX Runtime with int8 weights, exported once "
                "into the cache; eager: PyTorch fp32)")


def from_dict(cls: type[T], data: Mapping[str, Any] | None) -> T:
    """Build a config dataclass from a plain dict, rejecting unknown keys."""
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} key(s): {', '.join(unknown)}; "
            f"known keys: {', '.join(sorted(names))}"
        )
    for f in dataclasses.fields(cls):  # tuples come back from JSON/CSV as lists
        if f.name in data and isinstance(data[f.name], list):
            data[f.name] = tuple(data[f.name])
    return cls(**data)


def default_cache_dir() -> Path:
    """Where generated files live (the clip cache, exported runtimes): ``$SPEECHLSTM_CACHE``,
    else ``$XDG_CACHE_HOME/speechlstm``, else ``~/.cache/speechlstm``."""
    base = os.environ.get("SPEECHLSTM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "speechlstm")
    return Path(base)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-types dict (safe for ``torch.load(weights_only=True)`` and JSON)."""
    return dataclasses.asdict(cfg)


@dataclass(frozen=True)
class FeatureConfig:
    """MFCC front end. The model takes raw waveforms at ``sample_rate``."""

    sample_rate: int = 16000
    clip_ms: int = 1000
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_mels: int = 40
    n_mfcc: int = 40
    f_min: float = 20.0
    f_max: float = 7600.0
    norm: str = "cmvn"  # per-utterance normalisation: "cmvn", "cmn" or "none"
    # A noise floor this many dB under the window's loudest frame (white noise's spectral shape)
    # is added to the mel energies before the log, so the features span at most about this range:
    # digital silence (a muted or gated input) then looks like a quiet room, not a cliff, and the
    # floor follows the input's level (the fixed 1e-6 stays, for all-zero windows). None: off
    # (torchaudio's fixed 1e-6 only). The shipped stream model: 50.
    dynamic_range_db: float | None = None

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.clip_ms <= 0:
            raise ConfigError("sample_rate and clip_ms must be positive")
        if not 0 < self.hop_ms <= self.win_ms:
            raise ConfigError(f"need 0 < hop_ms <= win_ms, got {self.hop_ms}, {self.win_ms}")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ConfigError(f"need 0 <= f_min < f_max <= sample_rate/2, got {self.f_min}, {self.f_max}")
        if not 0 < self.n_mfcc <= self.n_mels:
            raise ConfigError(f"need 0 < n_mfcc <= n_mels, got {self.n_mfcc}, {self.n_mels}")
        if self.norm not in ("cmvn", "cmn", "none"):
            raise ConfigError(f"norm must be 'cmvn', 'cmn' or 'none', got {self.norm!r}")
        if self.dynamic_range_db is not None and not 0 < self.dynamic_range_db <= 150:
            raise ConfigError(f"dynamic_range_db must be in (0, 150] dB or None, got {self.dynamic_range_db}")

    @property
    def clip_samples(self) -> int:
        return self.sample_rate * self.clip_ms // 1000

    @property
    def win_samples(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_samples(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def n_fft(self) -> int:
        return 1 << (self.win_samples - 1).bit_length()  # next power of two

    @property
    def n_frames(self) -> int:
        return 1 + self.clip_samples // self.hop_samples  # centred STFT frames


# The default front end: the one place the sample rate and clip length of data made or read for a
# model are written (corpora, synthetic speech, test streams); a model itself carries its own.
DEFAULT_FEATURES = FeatureConfig()


@dataclass(frozen=True)
class ModelConfig:
    """Bidirectional LSTM classifier over MFCC frames."""

    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.25
    pooling: str = "attention"  # "attention" or "meanmax"
    conv_channels: int = 64  # >0: a Conv1d front end (stride conv_stride) before the LSTM; 0: none
    conv_stride: int = 4  # 4: the LSTM runs over 26 steps of 40 ms instead of 101 frames

    def __post_init__(self) -> None:
        if self.hidden_size <= 0 or self.num_layers <= 0:
            raise ConfigError("hidden_size and num_layers must be positive")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.pooling not in ("attention", "meanmax"):
            raise ConfigError(f"pooling must be 'attention' or 'meanmax', got {self.pooling!r}")
        if self.conv_channels < 0 or self.conv_stride < 1:
            raise ConfigError("conv_channels must be >= 0 and conv_stride >= 1")

    @property
    def lstm_input(self) -> int | None:
        return self.conv_channels or None  # None: the MFCC size

    @property
    def pooled_size(self) -> int:
        return 2 * self.hidden_size * (2 if self.pooling == "meanmax" else 1)


@dataclass(frozen=True)
class TrainConfig:
    """Everything the training loop and augmentation read."""

    task: str = "commands12"
    epochs: int = 60
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-2
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    patience: int = 60  # early stopping: epochs without validation improvement (60: the full schedule)
    seed: int = 0
    silence_ratio: float = 0.1  # silence clips per command clip (1/12 of the total)
    unknown_ratio: float = 0.1  # unknown clips per command clip in training (evaluation: always 0.1)
    synth_ratio: float = 0.0  # synthetic (TTS) command clips per real command clip, when extra data is given
    synth_unknowns: str = "separate"  # synthetic non-command words: "separate" (drawn at unknown_ratio of
    # the synthetic commands) or "pooled" (join the real unknown pool, which they then outnumber)
    extra_unknown_ratio: float = 0.0  # other words from --extra-data (kept "separate") per real command clip,
    # a share of their own beside the dataset's unknown_ratio (e.g. force-aligned read speech, wake words)
    ema_decay: float = 0.0  # >0: keep, evaluate and save an exponential moving average of the weights
    mixup_alpha: float = 0.0  # >0: mixup of waveforms with Beta(alpha, alpha) weights
    # augmentation (training only)
    noise_prob: float = 0.8
    snr_db: tuple[float, float] = (0.0, 20.0)
    shift_ms: float = 100.0
    gain_db: float = 6.0
    speed: float = 0.1  # speed perturbation: rate drawn from [1 - speed, 1 + speed] (tempo and pitch)
    reverb_prob: float = 0.0  # chance of a simulated room (exponential-decay impulse response)
    reverb_rt60_s: tuple[float, float] = (0.1, 0.6)
    # streaming-aware windows (windows.StreamWindows): shares of speech rows whose word is placed anywhere
    # fully inside, cut at an edge (labelled by how much is inside), or given other speech around it
    stream_place_prob: float = 0.0
    stream_cut_prob: float = 0.0
    stream_context_prob: float = 0.0
    keep_fraction: float = 0.85  # a cut command at least this much inside keeps its label
    unknown_fraction: float = 0.5  # ... at most this much inside is _unknown_ (between: left out of the loss)
    join_prob: float = 0.0  # share of command rows replaced by two different commands run together, each cut
    # in half at its middle (the first half of one, the second half of the other): a hard _unknown_
    talk_ratio: float = 0.0  # extra rows of read speech (--talk, no command words) as _unknown_, per batch row
    talk_hard_share: float = 0.0  # share of those rows drawn from mined false alarms (mining.py, --mine-with CKPT)
    mine_min_score: float = 0.3  # ... the windows where that model gives a command at least this probability
    # distillation (train --teacher CKPT, repeatable): the loss is (1 - w) * cross-entropy + w * T^2 *
    # KL(teachers' mean softened posteriors || the student's), on the same augmented batch
    distill_weight: float = 0.0
    distill_temperature: float = 2.0
    time_masks: int = 2
    time_mask_frames: int = 10
    freq_masks: int = 2
    freq_mask_bins: int = 5

    def __post_init__(self) -> None:
        if self.task not in ("commands12", "words35"):
            raise ConfigError(f"task must be 'commands12' or 'words35', got {self.task!r}")
        if self.epochs <= 0 or self.batch_size <= 0 or self.lr <= 0:
            raise ConfigError("epochs, batch_size and lr must be positive")
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise ConfigError(f"snr_db must be (low, high), got {self.snr_db}")
        if len(self.reverb_rt60_s) != 2 or not 0 < self.reverb_rt60_s[0] <= self.reverb_rt60_s[1]:
            raise ConfigError(f"reverb_rt60_s must be (low, high) > 0, got {self.reverb_rt60_s}")
        if self.synth_unknowns not in ("separate", "pooled"):
            raise ConfigError(f"synth_unknowns must be 'separate' or 'pooled', got {self.synth_unknowns!r}")
        if not 0 <= self.speed < 0.5:
            raise ConfigError(f"speed must be in [0, 0.5), got {self.speed}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.unknown_fraction < self.keep_fraction <= 1:
            raise ConfigError("need 0 <= unknown_fraction < keep_fraction <= 1")
        if not 0 <= self.distill_weight <= 1 or self.distill_temperature <= 0:
            raise ConfigError("need 0 <= distill_weight <= 1 and distill_temperature > 0")
        if not (0 <= self.talk_hard_share <= 1 and 0 <= self.mine_min_score <= 1):
            raise ConfigError("talk_hard_share and mine_min_score must be in [0, 1]")
        if self.stream_place_prob + self.stream_cut_prob > 1:
            raise ConfigError("stream_place_prob + stream_cut_prob must be <= 1")
        for name in ("unknown_ratio", "extra_unknown_ratio", "silence_ratio", "synth_ratio", "mixup_alpha",
                     "reverb_prob", "talk_ratio", "stream_place_prob", "stream_cut_prob", "stream_context_prob",
                     "join_prob"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class PretrainConfig:
    """Phonetic pretraining of the encoder (``pretrain.py``): 1 s windows of
    force-aligned read speech, a phone label for every encoder step."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-2
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    seed: int = 0
    validation_pct: float = 10.0  # speakers held out (by a hash of the id) to choose the best epoch
    windows_per_second: float = 1.0  # training windows per epoch per second of training audio
    noise_prob: float = 0.8  # background noise (--noise) at a random SNR, as in command training
    snr_db: tuple[float, float] = (0.0, 20.0)
    gain_db: float = 6.0

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size <= 0 or self.lr <= 0 or self.windows_per_second <= 0:
            raise ConfigError("epochs, batch_size, lr and windows_per_second must be positive")
        if not 0 < self.validation_pct < 100:
            raise ConfigError(f"validation_pct must be in (0, 100), got {self.validation_pct}")
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise ConfigError(f"snr_db must be (low, high), got {self.snr_db}")


@dataclass(frozen=True)
class StreamConfig:
    """How continuous audio becomes detections (``StreamingRecognizer``). Saved in the
    checkpoint once calibrated on a validation stream, so the CLI, the live loop and the
    web demo's Live tab all use the same rule.

    Every ``hop_ms`` the model hears the last second; posteriors are averaged over
    ``average_window_ms``. A command becomes a candidate when it is the top class and
    clears its threshold (``thresholds[label]``, else ``threshold``); the candidate
    with the highest score wins (a later one must beat it by ``peak_margin``, so on a
    plateau the earliest hop wins), and it fires once ``lookahead_ms`` pass without a
    higher one (its peak). No second detection within ``suppression_ms`` of a peak.
    ``lookahead_ms = 0`` fires at the first hop over the threshold. Hops quieter
    than ``gate_db`` (dBFS RMS of the window) skip the model and count as silence.

    With ``max_word_ms`` set, a detection must also be a word said on its own
    (``vad.SpeechSegments.verdict``): silero-vad's speech segment that fills most of
    its window is at most ``max_word_ms`` long, and no speech that overlaps the window
    is still running ``vad_wait_ms`` after it. Segments open at speech probability
    ``vad_threshold`` and close after ``vad_silence_ms`` under it. The detection is
    reported once that is known (the segment has closed). ``None``: no such check.
    """

    hop_ms: float = 100.0
    threshold: float = 0.7
    thresholds: Mapping[str, float] = field(default_factory=dict)  # per command, from calibration
    average_window_ms: float = 300.0
    lookahead_ms: float = 300.0
    peak_margin: float = 0.02
    suppression_ms: float = 1000.0
    gate_db: float | None = -55.0
    max_word_ms: float | None = None
    vad_threshold: float = 0.5
    vad_silence_ms: float = 100.0
    vad_wait_ms: float = 800.0

    def __post_init__(self) -> None:
        if self.hop_ms <= 0 or min(self.average_window_ms, self.suppression_ms, self.lookahead_ms,
                                   self.peak_margin) < 0:
            raise ConfigError("need hop_ms > 0 and average_window_ms, lookahead_ms, peak_margin, suppression_ms >= 0")
        if (self.max_word_ms is not None and self.max_word_ms <= 0) or not 0 < self.vad_threshold < 1 \
                or min(self.vad_silence_ms, self.vad_wait_ms) < 0:
            raise ConfigError("need max_word_ms > 0 (or None), 0 < vad_threshold < 1, "
                              "vad_silence_ms and vad_wait_ms >= 0")
        for name, t in {"threshold": self.threshold, **self.thresholds}.items():
            if not 0 < t <= 1:
                raise ConfigError(f"threshold for {name} must be in (0, 1], got {t}")
        object.__setattr__(self, "thresholds", {str(k): float(v) for k, v in self.thresholds.items()})
        object.__setattr__(self, "threshold", float(self.threshold))  # plain types: weights_only loads

    def threshold_of(self, label: str) -> float:
        return self.thresholds.get(label, self.threshold)

    def with_threshold(self, threshold: float) -> "StreamConfig":
        """One threshold for every command: a global threshold clears the per-command ones."""
        return dataclasses.replace(self, threshold=threshold, thresholds={})

    @property
    def average_hops(self) -> int:
        """How many hops' posteriors the rule averages (the latest one included)."""
        return max(1, math.ceil(self.average_window_ms / self.hop_ms - 1e-9))
