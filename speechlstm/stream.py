"""StreamingRecognizer: continuous audio in, one Detection per spoken command
out. Pure computation: no audio device, no threads.

A bidirectional LSTM cannot carry state frame by frame, so every ``hop_ms``
the model re-runs on the last clip (1 s) of audio. What happens to those
posteriors is ``PeakPicker``'s job (the rule is ``config.StreamConfig``): they
are averaged over ``average_window_ms``; a command that is the top class and
clears its own threshold becomes a candidate, and the best candidate fires
``lookahead_ms`` after its peak, once no higher score followed, so a word
fires once, at the hop where the window holds it best, not at the first
partial view that happens to cross a threshold. Hops whose window is quieter
than ``gate_db`` skip the model and count as silence. With ``max_word_ms`` set, a
detection is held until voice activity (``vad``) tells whether its word was
said on its own, and dropped when it was inside running speech. Everything is
a function of the sample stream alone, so results do not depend on chunk sizes.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .audio import to_float32, to_mono
from .config import StreamConfig
from .enroll import STREAM_THRESHOLD as WORD_THRESHOLD
from .labels import FILLERS, SILENCE
from .infer import Recognizer
from .vad import SpeechSegments, VoiceActivity


@dataclass(frozen=True)
class Detection:
    label: str
    score: float  # smoothed probability at the peak
    time_ms: float  # stream time of the end of the window that peaked
    start_ms: float  # stream time of the start of that window
    fired_ms: float | None = None  # stream time when it was reported (peak + look-ahead); None: time_ms

    def __post_init__(self) -> None:
        if self.fired_ms is None:
            object.__setattr__(self, "fired_ms", self.time_ms)

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


class PeakPicker:
    """The decision rule alone: one posterior vector per hop in, detections out.
    ``StreamingRecognizer`` feeds it from the model; ``stream_eval`` replays recorded
    posteriors through it to sweep and calibrate thresholds without re-running the model."""

    def __init__(self, labels: list[str], config: StreamConfig, clip_ms: float = 1000.0):
        self.labels, self.config, self.clip_ms = list(labels), config, clip_ms
        self.fillers = {i for i, name in enumerate(self.labels) if name in FILLERS}
        self.thresholds = np.array([config.threshold_of(name) for name in self.labels], dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self._history: deque[np.ndarray] = deque(maxlen=self.config.average_hops)
        self._pending: tuple[int, float, float] | None = None  # (label, score, time_ms) of the best so far
        self._last_peak_ms = -np.inf
        self._disarmed: set[int] = set()  # fired, and not yet back under their threshold
        self.last_probs: np.ndarray | None = None  # smoothed posteriors after the latest hop

    def step(self, now_ms: float, probs: np.ndarray) -> Detection | None:
        """The posteriors of the window ending at ``now_ms``; returns a detection when a peak is confirmed."""
        self._history.append(probs)  # the last config.average_hops hops
        return self.decide(now_ms, np.mean(self._history, axis=0))

    def decide(self, now_ms: float, avg: np.ndarray) -> Detection | None:
        """The rule on already smoothed posteriors (what ``step`` does after averaging)."""
        cfg = self.config
        self.last_probs = avg
        # a command that fired re-arms once its score falls under its threshold: a word
        # that holds the window longer than suppression_ms still fires once
        self._disarmed = {i for i in self._disarmed if avg[i] >= self.thresholds[i]}
        best = int(np.argmax(avg))
        score = float(avg[best])
        if (best not in self.fillers and best not in self._disarmed and score >= self.thresholds[best]
                and now_ms - self._last_peak_ms >= cfg.suppression_ms
                and (self._pending is None or score > self._pending[1] + cfg.peak_margin + 1e-6)):
            self._pending = (best, score, now_ms)
        if self._pending is not None and now_ms - self._pending[2] >= cfg.lookahead_ms - 1e-6:
            return self._fire(now_ms)
        return None

    @property
    def waiting(self) -> bool:
        """A candidate is waiting out its look-ahead, or a command waits to re-arm."""
        return self._pending is not None or bool(self._disarmed)

    def flush(self, now_ms: float) -> Detection | None:
        """The end of the stream: report a candidate still waiting for its look-ahead."""
        return self._fire(now_ms) if self._pending is not None else None

    def _fire(self, now_ms: float) -> Detection:
        label, score, peak_ms = self._pending
        self._pending, self._last_peak_ms = None, peak_ms
        self._disarmed.add(label)
        return Detection(self.labels[label], score, peak_ms, max(0.0, peak_ms - self.clip_ms), now_ms)


def speech_segments(config: StreamConfig, frame_ms: float) -> SpeechSegments:
    return SpeechSegments(config.vad_threshold, config.vad_silence_ms, frame_ms)


def isolation_verdict(segments: SpeechSegments, det: Detection, config: StreamConfig) -> Detection | bool | None:
    """``det`` as reported once its word is known to be said on its own (reported when
    that became known), False when it was not, None while the frames cannot tell."""
    v = segments.verdict(det.start_ms, det.time_ms, config.max_word_ms, config.vad_wait_ms)
    if v is None:
        return None
    accepted, known_ms = v
    return dataclasses.replace(det, fired_ms=max(det.fired_ms, known_ms)) if accepted else False


def gate_detections(detections: list[Detection], segments: SpeechSegments,
                    config: StreamConfig) -> list[Detection]:
    """The isolation check on a recorded run (``segments``: its finished speech
    segments): what ``StreamingRecognizer`` reports live."""
    if config.max_word_ms is None:
        return detections
    return [d for d in (isolation_verdict(segments, det, config) for det in detections) if d]


def with_words(config: StreamConfig, words: Sequence[str], threshold: float = WORD_THRESHOLD) -> StreamConfig:
    """The rule with enrolled ``words``: each fires where its merged probability clears
    ``threshold`` (default ``enroll.STREAM_THRESHOLD``)."""
    return dataclasses.replace(config, thresholds={**{w: threshold for w in words}, **config.thresholds})


class StreamingRecognizer:
    """``StreamingRecognizer(rec)`` uses the rule saved in the model's checkpoint
    (``rec.checkpoint.streaming``); keyword arguments override its fields. Passing
    ``threshold`` alone sets every command's threshold (it replaces calibrated ones)."""

    def __init__(self, recognizer: Recognizer, config: StreamConfig | None = None, *,
                 input_rate: int | None = None, **overrides):
        config = config or recognizer.checkpoint.streaming
        if recognizer.words is not None:
            config = with_words(config, recognizer.words.names)
        if "threshold" in overrides and "thresholds" not in overrides:  # one threshold for all
            config = config.with_threshold(overrides.pop("threshold"))
        self.config = dataclasses.replace(config, **overrides)
        self.recognizer = recognizer
        self.sample_rate = recognizer.sample_rate
        self.hop_samples = max(1, round(self.sample_rate * self.config.hop_ms / 1000))
        self.input_rate = input_rate or self.sample_rate
        labels = recognizer.labels
        self._silence = labels.index(SILENCE) if SILENCE in labels else None
        self.picker = PeakPicker(labels, self.config, 1000.0 * recognizer.clip_samples / self.sample_rate)
        self.trace: list[tuple[float, np.ndarray]] | None = None  # set to [] to record every hop's posteriors
        self.vad: VoiceActivity | None = None  # runs when the rule checks isolation, or while recording
        self.reset()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None, device: str = "auto", *,
                        runtime: str = "auto", input_rate: int | None = None, **overrides) -> "StreamingRecognizer":
        """``None``: the shipped model (the one ``Recognizer`` loads), with its calibrated rule;
        ``runtime``: as for ``Recognizer`` (default: the fastest on a CPU)."""
        return cls(Recognizer.from_checkpoint(path, device, runtime=runtime), input_rate=input_rate, **overrides)

    def reset(self) -> None:
        """Forget all audio and history; stream time starts again at 0."""
        self._ring = np.zeros(self.recognizer.clip_samples, dtype=np.float32)  # the last clip, oldest first
        self._samples = 0  # samples pushed since reset (at the model rate)
        self._to_hop = self.hop_samples
        self.picker.reset()
        self.model_runs = self.gated_hops = self.not_isolated = 0
        if self.trace is not None:
            self.trace = []
        self.vad_trace: list[np.ndarray] = []  # speech probabilities per VAD frame, while recording
        if self.vad is None and (self.config.max_word_ms is not None or self.trace is not None):
            self.vad = VoiceActivity(self.sample_rate)
        if self.vad is not None:
            self.vad.reset()
            self.segments = speech_segments(self.config, self.vad.frame_ms)
        self._held: deque[Detection] = deque()  # fired, waiting for the isolation verdict
        self._resampler = None
        if self.input_rate != self.sample_rate:
            import soxr

            self._resampler = soxr.ResampleStream(self.input_rate, self.sample_rate, 1, dtype="float32",
                                                  quality="HQ")

    @property
    def time_ms(self) -> float:
        return 1000.0 * self._samples / self.sample_rate

    @property
    def last_probs(self) -> np.ndarray | None:
        """Smoothed posteriors after the latest hop."""
        return self.picker.last_probs

    def push(self, chunk: np.ndarray, last: bool = False) -> list[Detection]:
        """Feed audio (any length, mono or multichannel, at ``input_rate``). ``last``:
        the stream ends here; a word still inside its look-ahead is reported now."""
        x = to_mono(to_float32(np.asarray(chunk)))
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=last)
        out: list[Detection] = []
        while len(x):
            take = min(len(x), self._to_hop)
            self._append(x[:take])
            if self.vad is not None:
                probs = self.vad.push(x[:take])
                self.segments.push(probs)
                if self.trace is not None:
                    self.vad_trace.append(probs)
            x, self._to_hop = x[take:], self._to_hop - take
            if self._to_hop == 0:
                self._to_hop = self.hop_samples
                det = self.picker.step(self.time_ms, self._posteriors())
                if det is not None:
                    self._held.append(det)
            out += self._release()
        if last:
            det = self.picker.flush(self.time_ms)
            if det is not None:
                self._held.append(det)
            if self.vad is not None:
                self.segments.finish()
            out += self._release()
        return out

    def _release(self) -> list[Detection]:
        """Held detections whose verdict is in, in order (all of them without the check)."""
        out: list[Detection] = []
        if self.config.max_word_ms is None:
            out, self._held = list(self._held), deque()
        while self._held:
            v = isolation_verdict(self.segments, self._held[0], self.config)
            if v is None:
                break
            self._held.popleft()
            if v:
                out.append(v)
            else:
                self.not_isolated += 1
        if self.vad is not None:
            # a detection yet to come starts at most clip + look-ahead before now (a second
            # of margin): older segments can never be under a window again
            horizon = self.time_ms - self.picker.clip_ms - self.config.lookahead_ms - 1000.0
            self.segments.forget_before(min([horizon] + [d.start_ms for d in self._held]))
        return out

    def _append(self, x: np.ndarray) -> None:
        n = len(self._ring)
        if len(x) >= n:
            self._ring[:] = x[-n:]
        else:
            self._ring[:-len(x)] = self._ring[len(x):]
            self._ring[-len(x):] = x
        self._samples += len(x)

    def _posteriors(self) -> np.ndarray:
        gate = self.config.gate_db
        rms = float(np.sqrt(np.mean(np.square(self._ring, dtype=np.float64))))
        if gate is not None and self._silence is not None and 20 * np.log10(rms + 1e-10) < gate:
            probs = np.zeros(len(self.recognizer.labels), dtype=np.float32)
            probs[self._silence] = 1.0
            self.gated_hops += 1
        else:
            probs = self.recognizer.probabilities(self._ring[None])[0]
            self.model_runs += 1
        if self.trace is not None:
            self.trace.append((self.time_ms, probs))
        return probs
