"""Audio in: read any file or array, mix to mono, resample, pad, pick the
window that holds the speech. numpy only; no torch, no audio devices."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np

from .errors import AudioError

AudioSource = Union[str, os.PathLike, bytes, io.IOBase, np.ndarray, "torch.Tensor"]  # noqa: F821

MIN_RATE, MAX_RATE = 1000, 384_000  # anything outside is a broken header, not audio
_INT_SCALE = {np.dtype(np.int8): 2**7, np.dtype(np.int16): 2**15, np.dtype(np.int32): 2**31,
              np.dtype(np.int64): 2**63}


def to_float32(samples: np.ndarray) -> np.ndarray:
    """Any PCM dtype -> float32 in [-1, 1]. Rejects NaN/inf."""
    a = np.asarray(samples)
    if a.dtype == np.uint8:  # 8-bit wav is unsigned
        out = (a.astype(np.float32) - 128.0) / 128.0
    elif a.dtype in _INT_SCALE:
        out = a.astype(np.float32) / _INT_SCALE[a.dtype]
    elif np.issubdtype(a.dtype, np.floating):
        out = a.astype(np.float32, copy=False)
    else:
        raise AudioError(f"unsupported sample dtype {a.dtype}")
    if not np.all(np.isfinite(out)):
        raise AudioError("audio contains NaN or infinite samples")
    return np.clip(out, -1.0, 1.0)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(n,), (n, channels) or (channels, n) -> (n,). Channels are the short axis."""
    a = np.asarray(samples)
    if a.ndim == 1:
        return a
    if a.ndim != 2:
        raise AudioError(f"audio must be 1-D or 2-D, got shape {a.shape}")
    channel_axis = 0 if a.shape[0] < a.shape[1] else 1
    return a.mean(axis=channel_axis, dtype=np.float32)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """High-quality resampling (soxr via librosa)."""
    if from_rate == to_rate:
        return samples
    if from_rate <= 0 or to_rate <= 0:
        raise AudioError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    import librosa  # heavy import, only when needed

    return librosa.resample(samples, orig_sr=from_rate, target_sr=to_rate, res_type="soxr_hq").astype(
        np.float32, copy=False
    )


def _other_codec(path: Path) -> bool:
    """Does the file start like audio that libsndfile does not read but audioread's
    decoders (FFmpeg, GStreamer) may: MP4/M4A, Matroska/WebM, ASF/WMA, AAC, AMR, AC-3,
    or MP3 for an older libsndfile? Anything else (text, random bytes, a broken WAV)
    is rejected at once instead of being handed to every decoder in turn (seconds)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return (head[4:8] == b"ftyp" or head.startswith((b"\x1a\x45\xdf\xa3", b"\x30\x26\xb2\x75", b"#!AMR",
                                                    b"\x0b\x77", b"ID3"))
            or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0))  # MPEG/AAC frame sync


def _decode(source) -> tuple[np.ndarray, int]:
    """Decode a file path / bytes / file object with soundfile, then librosa."""
    import soundfile as sf

    name = str(source) if isinstance(source, (str, os.PathLike)) else "<audio bytes>"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise AudioError(f"{name}: no such file")
        if path.stat().st_size == 0:
            raise AudioError(f"{name}: file is empty")
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise AudioError("audio bytes are empty")
        source = io.BytesIO(source)
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
        return data, int(rate)
    except Exception as sf_error:  # libsndfile cannot decode it: try librosa/audioread
        if not isinstance(source, (str, os.PathLike)) or not _other_codec(Path(source)):
            raise AudioError(f"{name}: not a readable audio file ({sf_error})") from None
        try:
            import warnings

            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data, rate = librosa.load(source, sr=None, mono=False)
        except Exception as lr_error:
            raise AudioError(f"{name}: not a readable audio file ({sf_error}; {lr_error})") from None
        return np.atleast_2d(data).T if data.ndim == 1 else data.T, int(rate)


def read_audio(
    source: AudioSource, sample_rate: int | None = None, *, source_rate: int | None = None
) -> tuple[np.ndarray, int]:
    """Read audio into mono float32 in [-1, 1].

    source: a path, bytes, a binary file object, or an array/tensor of samples
    (then ``source_rate`` gives its rate). With ``sample_rate`` the audio is
    resampled to it. Returns ``(samples, rate)``; raises AudioError.
    """
    if isinstance(source, (str, os.PathLike, bytes, bytearray, io.IOBase)):
        data, rate = _decode(source)
    else:
        if hasattr(source, "detach"):  # torch.Tensor without importing torch
            source = source.detach().cpu().numpy()
        data = np.asarray(source)
        if source_rate is None:
            if sample_rate is None:
                raise AudioError("an array needs source_rate (or sample_rate) to say its rate")
            source_rate = sample_rate
        rate = int(source_rate)
    if data.size == 0:
        raise AudioError("audio has no samples")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"unsupported sample rate {rate} Hz (expected {MIN_RATE}-{MAX_RATE} Hz)")
    mono = to_mono(to_float32(data))
    if sample_rate is not None and rate != sample_rate:
        mono, rate = resample(mono, rate, sample_rate), sample_rate
    return np.ascontiguousarray(mono, dtype=np.float32), rate


def wav_files(folder: str | os.PathLike) -> list[Path]:
    """The ``.wav`` files of a folder, sorted, without hidden ones: macOS copies leave a
    ``._NAME.wav`` (AppleDouble metadata, not audio) beside every file."""
    return sorted(f for f in Path(folder).glob("*.wav") if not f.name.startswith("."))


def pad_or_trim(samples: np.ndarray, length: int) -> np.ndarray:
    """Centre-pad with zeros or centre-crop to exactly ``length`` samples."""
    n = samples.shape[-1]
    if n == length:
        return samples
    if n < length:
        left = (length - n) // 2
        pad = [(0, 0)] * (samples.ndim - 1) + [(left, length - n - left)]
        return np.pad(samples, pad)
    start = (n - length) // 2
    return samples[..., start : start + length]


def speech_window(samples: np.ndarray, length: int, hop: int) -> int:
    """Start of the ``length``-sample window with the most energy (the speech).

    Energy is summed over ``hop``-sample frames and the window slides by one
    frame, so out-of-vocabulary speech is judged on where it is, not on the
    window that happens to score highest for some command.
    """
    n = samples.shape[-1]
    if n <= length:
        return 0
    frames = n // hop
    energy = np.square(samples[: frames * hop].astype(np.float64)).reshape(frames, hop).sum(1)
    per_window = max(1, length // hop)
    if frames <= per_window:
        return 0
    csum = np.concatenate([[0.0], np.cumsum(energy)])
    window_energy = csum[per_window:] - csum[:-per_window]  # (frames - per_window + 1,)
    start = int(np.argmax(window_energy)) * hop
    return min(start, n - length)


def speech_bounds(samples: np.ndarray, hop: int, floor_db: float = -30.0) -> tuple[np.ndarray, np.ndarray]:
    """Where the word is in each clip: (start, end) sample indices of the first and
    last ``hop``-sample frame whose energy is within ``floor_db`` of the clip's
    loudest frame. samples (..., S) -> two (...,) int arrays (a silent clip: 0, S)."""
    x = np.asarray(samples, dtype=np.float32)
    frames = x.shape[-1] // hop
    energy = np.square(x[..., : frames * hop]).reshape(*x.shape[:-1], frames, hop).mean(-1)  # (..., F)
    loud = energy >= energy.max(-1, keepdims=True) * 10.0 ** (floor_db / 10.0)
    loud &= energy > 1e-10
    any_loud = loud.any(-1)
    first = np.where(any_loud, loud.argmax(-1), 0)
    last = np.where(any_loud, frames - loud[..., ::-1].argmax(-1), x.shape[-1] // hop)
    return first * hop, np.minimum(last * hop, x.shape[-1])
