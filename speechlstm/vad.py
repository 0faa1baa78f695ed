"""Voice activity for the streaming rule: silero-vad's speech probability for
every frame of audio (its weights ship inside its wheel; MIT licence), the
speech segments those probabilities mark, and the verdict the rule asks for:
was the word behind a detection said on its own, or inside running speech?

A spoken command is a word said by itself. Read or conversational speech runs
on for seconds between pauses, and it is there that a keyword model's false
alarms come from. ``SpeechSegments.verdict`` accepts a detection when the
speech segment that fills most of its window is at most ``max_word_ms`` long,
and refuses it when there is no speech in the window or when speech that
overlaps it is still running ``wait_ms`` after the window's end. The verdict is
a function of the frames alone, so a live stream and a replay of its recorded
probabilities agree (``stream_eval`` replays, ``StreamingRecognizer`` runs live).
The only importer of silero_vad.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

import numpy as np
import torch

from .config import DEFAULT_FEATURES
from .errors import ConfigError

FRAME_SAMPLES = {16000: 512, 8000: 256}  # silero-vad's frame at the rates it supports (32 ms)
OFF_DROP = 0.15  # a running segment continues while the probability stays above threshold - this (silero's rule)


def _load_silero():
    """silero-vad's ONNX model from its wheel (no network), run by ONNX Runtime on one
    thread: its many tiny operators stall in torch's thread pool when the cores are
    busy (60 s of audio took 480 s with two other jobs on two cores, 3.7 s on one
    thread). Importing the package sets torch's thread count to 1; the caller's
    count is restored."""
    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad
    except ImportError:
        raise ConfigError("voice activity needs silero-vad: pip install silero-vad") from None
    finally:
        torch.set_num_threads(threads)
    try:
        return load_silero_vad(onnx=True)
    except ImportError:
        raise ConfigError("voice activity needs onnxruntime: pip install onnxruntime") from None


class VoiceActivity:
    """Streaming silero-vad: samples in (any chunking), one speech probability per
    completed frame out. Each instance holds its own model state."""

    def __init__(self, sample_rate: int = DEFAULT_FEATURES.sample_rate):
        if sample_rate not in FRAME_SAMPLES:
            raise ConfigError(f"voice activity runs at 8 or 16 kHz, not {sample_rate} Hz")
        self.sample_rate = sample_rate
        self.frame_samples = FRAME_SAMPLES[sample_rate]
        self.frame_ms = 1000.0 * self.frame_samples / sample_rate
        self.model = _load_silero()
        self.reset()

    def reset(self) -> None:
        self.model.reset_states()
        self._buffer = np.zeros(0, np.float32)

    @torch.inference_mode()
    def push(self, x: np.ndarray) -> np.ndarray:
        """float32 mono samples at ``sample_rate`` -> probabilities of the frames completed (F,)."""
        buf = np.concatenate([self._buffer, np.asarray(x, np.float32)]) if len(self._buffer) else np.asarray(x, np.float32)
        n = len(buf) // self.frame_samples
        out = np.empty(n, np.float32)
        for i in range(n):
            frame = torch.from_numpy(buf[i * self.frame_samples : (i + 1) * self.frame_samples].copy())
            out[i] = float(self.model(frame, self.sample_rate))
        self._buffer = buf[n * self.frame_samples :].copy()
        return out

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """A whole recording from a fresh state: (F,) one per complete frame."""
        self.reset()
        out = self.push(audio)
        self.reset()
        return out


@dataclass(frozen=True)
class Segment:
    start_ms: float  # start of its first speech frame
    end_ms: float  # end of its last speech frame
    closed_ms: float  # stream time when it was known to be over

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


class SpeechSegments:
    """Speech segments from per-frame probabilities, silero's way: a segment opens at
    a frame with probability >= ``threshold`` and closes after ``min_silence_ms`` of
    frames under ``threshold - 0.15``."""

    def __init__(self, threshold: float = 0.5, min_silence_ms: float = 100.0, frame_ms: float = 32.0):
        self.threshold, self.min_silence_ms, self.frame_ms = threshold, min_silence_ms, frame_ms
        self._quiet_frames = max(1, int(np.ceil(min_silence_ms / frame_ms - 1e-9)))
        self.reset()

    def reset(self) -> None:
        self.closed: list[Segment] = []
        self.frames = 0  # frames seen
        self._start: int | None = None  # first frame of the open segment
        self._last = 0  # last speech frame of the open segment
        self._quiet = 0
        self.finished = False  # finish() was called: no more frames will come

    @property
    def time_ms(self) -> float:
        """Stream time up to which frames have been seen."""
        return self.frames * self.frame_ms

    def push(self, probs: np.ndarray) -> None:
        for p in np.asarray(probs, np.float32):
            i = self.frames
            self.frames += 1
            if self._start is None:
                if p >= self.threshold:
                    self._start, self._last, self._quiet = i, i, 0
            elif p >= self.threshold - OFF_DROP:
                self._last, self._quiet = i, 0
            else:
                self._quiet += 1
                if self._quiet >= self._quiet_frames:
                    self._close()

    def finish(self) -> None:
        """The stream ended: a segment still open is over."""
        if self._start is not None:
            self._close()
        self.finished = True

    def _close(self) -> None:
        f = self.frame_ms
        self.closed.append(Segment(self._start * f, (self._last + 1) * f, self.frames * f))
        self._start = None

    def forget_before(self, time_ms: float) -> None:
        """Drop the closed segments that end by ``time_ms``: no verdict on a window
        starting after it needs them (a live stream calls this to stay small)."""
        del self.closed[: bisect.bisect_right(self.closed, time_ms, key=lambda s: s.end_ms)]

    def verdict(self, start_ms: float, end_ms: float, max_word_ms: float,
                wait_ms: float) -> tuple[bool, float] | None:
        """Is the word in the window [start_ms, end_ms] said on its own? (accepted,
        stream time of the verdict), or None while the frames cannot tell yet."""
        if self.time_ms < end_ms and not self.finished:
            return None
        deadline = end_ms + wait_ms
        # segments are in stream order and never overlap: the first one ending after the
        # window's start, then on while they start before its end
        first = bisect.bisect_right(self.closed, start_ms, key=lambda s: s.end_ms)
        inside = list(itertools.takewhile(lambda s: s.start_ms < end_ms, self.closed[first:]))
        if any(s.closed_ms > deadline for s in inside):  # speech ran on past the deadline
            return False, deadline
        if self._start is not None and self._start * self.frame_ms < end_ms:
            if self.time_ms >= deadline:
                return False, deadline
            return None  # wait for it to close
        if not inside:
            return False, end_ms  # no speech under the detection
        word = max(inside, key=lambda s: min(s.end_ms, end_ms) - max(s.start_ms, start_ms))
        return word.duration_ms <= max_word_ms, max(s.closed_ms for s in inside)
