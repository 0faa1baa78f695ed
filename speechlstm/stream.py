"""StreamingRecognizer: continuous audio in, one Detection per spoken command
out. Pure computation: no audio device, no threads.

A bidirectional LSTM cannot carry state frame by frame, so every ``hop_ms``
the model re-runs on the last clip (1 s) of audio. Posteriors are averaged
over ``average_window_ms``; a command fires when its smoothed score passes
``threshold`` and no detection fired within ``suppression_ms`` (cf.
TensorFlow's RecognizeCommands). Hops whose window is quieter than
``gate_db`` skip the model and count as silence. Everything is a function
of the sample stream alone, so results do not depend on chunk sizes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from .audio import to_float32, to_mono
from .data import SILENCE, UNKNOWN
from .infer import Recognizer


@dataclass(frozen=True)
class Detection:
    label: str
    score: float  # smoothed probability when it fired
    time_ms: float  # stream time of the end of the window that fired
    start_ms: float  # stream time of the start of that window

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


class StreamingRecognizer:
    def __init__(self, recognizer: Recognizer, *, hop_ms: float = 100.0, threshold: float = 0.7,
                 suppression_ms: float = 1000.0, average_window_ms: float = 500.0,
                 gate_db: float | None = -55.0, input_rate: int | None = None):
        if hop_ms <= 0 or average_window_ms < 0 or suppression_ms < 0 or not 0 < threshold <= 1:
            raise ValueError("need hop_ms > 0, average_window_ms >= 0, suppression_ms >= 0, 0 < threshold <= 1")
        self.recognizer = recognizer
        self.sample_rate = recognizer.sample_rate
        self.hop_samples = max(1, round(self.sample_rate * hop_ms / 1000))
        self.hop_ms, self.threshold, self.suppression_ms = hop_ms, threshold, suppression_ms
        self.average_window_ms, self.gate_db = average_window_ms, gate_db
        self.input_rate = input_rate or self.sample_rate
        labels = recognizer.labels
        self._silence = labels.index(SILENCE) if SILENCE in labels else None
        self._fillers = {i for i, name in enumerate(labels) if name in (SILENCE, UNKNOWN)}
        self.reset()

    def reset(self) -> None:
        """Forget all audio and history; stream time starts again at 0."""
        n = self.recognizer.clip_samples
        self._ring = np.zeros(n, dtype=np.float32)  # the last clip, oldest first
        self._samples = 0  # samples pushed since reset (at the model rate)
        self._to_hop = self.hop_samples
        self._history: deque[tuple[float, np.ndarray]] = deque()
        self._last_fire_ms = -np.inf
        self.model_runs = self.gated_hops = 0
        self.last_probs: np.ndarray | None = None  # smoothed posteriors after the latest hop
        self._resampler = None
        if self.input_rate != self.sample_rate:
            import soxr

            self._resampler = soxr.ResampleStream(self.input_rate, self.sample_rate, 1, dtype="float32",
                                                  quality="HQ")

    @property
    def time_ms(self) -> float:
        return 1000.0 * self._samples / self.sample_rate

    def push(self, chunk: np.ndarray, last: bool = False) -> list[Detection]:
        """Feed audio (any length, mono or multichannel, at ``input_rate``)."""
        x = to_mono(to_float32(np.asarray(chunk)))
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=last)
        out: list[Detection] = []
        while len(x):
            take = min(len(x), self._to_hop)
            self._append(x[:take])
            x, self._to_hop = x[take:], self._to_hop - take
            if self._to_hop == 0:
                self._to_hop = self.hop_samples
                det = self._hop()
                if det is not None:
                    out.append(det)
        return out

    def _append(self, x: np.ndarray) -> None:
        n = len(self._ring)
        if len(x) >= n:
            self._ring[:] = x[-n:]
        else:
            self._ring[:-len(x)] = self._ring[len(x):]
            self._ring[-len(x):] = x
        self._samples += len(x)

    def _hop(self) -> Detection | None:
        now = self.time_ms
        rms = float(np.sqrt(np.mean(np.square(self._ring, dtype=np.float64))))
        if self.gate_db is not None and self._silence is not None and 20 * np.log10(rms + 1e-10) < self.gate_db:
            probs = np.zeros(len(self.recognizer.labels), dtype=np.float32)
            probs[self._silence] = 1.0
            self.gated_hops += 1
        else:
            probs = self.recognizer.probabilities(self._ring[None])[0]
            self.model_runs += 1
        self._history.append((now, probs))
        while self._history and self._history[0][0] <= now - self.average_window_ms - 1e-6:
            self._history.popleft()
        avg = np.mean([p for _, p in self._history], axis=0)
        self.last_probs = avg
        best = int(np.argmax(avg))
        if best in self._fillers or avg[best] < self.threshold:
            return None
        if now - self._last_fire_ms < self.suppression_ms:
            return None
        self._last_fire_ms = now
        clip_ms = 1000.0 * len(self._ring) / self.sample_rate
        return Detection(self.recognizer.labels[best], float(avg[best]), now, max(0.0, now - clip_ms))
