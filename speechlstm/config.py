"""Configuration dataclasses: the front end, the network and the streaming rule
(what inference rebuilds from a checkpoint; the only place feature and model sizes
are defined and derived), and the helpers every config section uses. Training's
sections live with the modules that read them (``train.TrainConfig`` gathers them)."""

from __future__ import annotations

import dataclasses
import math
import os
import typing
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


def from_dict(cls: type[T], data: Mapping[str, Any] | None, base: T | None = None) -> T:
    """Build a config dataclass from a plain dict, rejecting unknown keys; a field that is
    itself a config dataclass (a section) is built from its own dict the same way, on top of
    the section's default in ``cls`` (``base``): a partial section keeps the parent's defaults
    for the keys it leaves out (pretraining's 10 epochs stay 10 when only its seed is given)."""
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} key(s): {', '.join(unknown)}; "
            f"known keys: {', '.join(sorted(names))}"
        )
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            if not isinstance(data[f.name], Mapping):
                raise ConfigError(f"{cls.__name__}.{f.name} is a section: give a table of its keys")
            default = getattr(base, f.name) if base is not None else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
            data[f.name] = from_dict(hints[f.name], data[f.name],
                                     default if dataclasses.is_dataclass(default) else None)
        elif isinstance(data[f.name], list):  # tuples come back from JSON/CSV/TOML as lists
            data[f.name] = tuple(data[f.name])
    return dataclasses.replace(base, **data) if base is not None else cls(**data)


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` on top, section by section (nested dicts merge, values replace)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
            else value
    return out


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
