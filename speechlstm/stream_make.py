"""Building long test recordings with ground truth, like TensorFlow's
generate_streaming_test_wav: real command clips (and other words) over the
dataset's background noise, optionally with continuous read speech
(LibriSpeech layout) between them as background talk, or read speech alone
(where every detection is a false alarm). The truth CSV is what
``stream_eval`` scores against."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .audio import read_audio, speech_bounds
from .config import DEFAULT_FEATURES
from .corpus import read_utterances
from .data import SpeechCommandsIndex
from .labels import COMMANDS10, UNKNOWN
from .errors import DataError

SAMPLE_RATE = DEFAULT_FEATURES.sample_rate


@dataclass(frozen=True)
class Event:
    label: str  # a command, or _unknown_ for other speech
    time_ms: float  # where the 1 s clip starts in the recording
    end_ms: float | None = None  # where its speech ends (energy), for detection delays


def _tile_noise(audio: np.ndarray, noise: list[np.ndarray], volume: float, rng: np.random.Generator) -> None:
    pos, total = 0, len(audio)
    while noise and pos < total:
        seg = noise[rng.integers(len(noise))]
        take = min(len(seg), total - pos, 10 * SAMPLE_RATE)
        start = rng.integers(len(seg) - take + 1)
        audio[pos : pos + take] += seg[start : start + take] * volume
        pos += take


class _Talk:
    """Read speech, utterance after utterance, handed out in pieces (seeded order)."""

    def __init__(self, talk_dir: str | os.PathLike, half: str, rng: np.random.Generator, with_commands: bool):
        self.utterances = read_utterances(talk_dir, half, () if with_commands else COMMANDS10)
        self.order = rng.permutation(len(self.utterances))
        self.rng, self.next, self.buffer = rng, 0, np.zeros(0, np.float32)

    def take(self, n: int) -> np.ndarray:
        parts, have = [self.buffer], len(self.buffer)
        while have < n:  # read utterances until n samples are there, joined once (an hour is 1,000 files)
            u = self.utterances[self.order[self.next % len(self.order)]]
            self.next += 1
            x, _ = read_audio(u.path, SAMPLE_RATE)
            parts += [x, np.zeros(int(self.rng.uniform(0.2, 0.8) * SAMPLE_RATE), np.float32)]
            have += len(parts[-2]) + len(parts[-1])
        joined = np.concatenate(parts) if len(parts) > 1 else self.buffer
        out, self.buffer = joined[:n], joined[n:]
        fade = min(len(out) // 2, SAMPLE_RATE // 50)  # 20 ms fades: no clicks at the cuts
        if fade:
            ramp = np.linspace(0, 1, fade, dtype=np.float32)
            out = out.copy()
            out[:fade] *= ramp
            out[-fade:] *= ramp[::-1]
        return out


def make_stream(data_dir: str | os.PathLike | None, split: str = "test", minutes: float = 1.0, seed: int = 0,
                gap_ms: tuple[float, float] = (1500.0, 3000.0), unknown_share: float = 0.2,
                noise_volume: float = 0.1, talk_dir: str | os.PathLike | None = None, talk_half: str = "all",
                talk_volume: float = 0.5, talk_margin_ms: float = 300.0, talk_only: bool = False,
                talk_with_commands: bool = False, progress: bool = False) -> tuple[np.ndarray, list[Event]]:
    """A recording of ``minutes`` at 16 kHz with a clip every 2.5-4 s (1 s clip +
    gap) over continuous background noise. Clips are drawn without replacement
    (each used once before any repeats). ``talk_dir``: LibriSpeech-layout read
    speech (speakers of ``talk_half``) fills each gap, ``talk_margin_ms`` clear of
    the clips, at ``talk_volume``. ``talk_only``: read speech and noise alone, no
    clips (every detection is a false alarm). The read speech is command-free:
    utterances whose transcript holds one of the ten commands are left out
    (a reader's "Yes." is a real yes), unless ``talk_with_commands``. Returns
    (samples, ground truth)."""
    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * SAMPLE_RATE)
    audio = np.zeros(total, dtype=np.float32)
    index = SpeechCommandsIndex.scan(data_dir) if data_dir is not None else None
    if index is not None:
        _tile_noise(audio, [read_audio(p, SAMPLE_RATE)[0] for p in index.noise_files], noise_volume, rng)
    # the talk draws from its own generator: the same seed gives the same clips with or without it
    talk = (_Talk(talk_dir, talk_half, np.random.default_rng([seed, 1]), talk_with_commands)
            if talk_dir is not None else None)
    if talk_only:
        if talk is None:
            raise DataError("talk_only needs talk_dir (read speech in the LibriSpeech layout)")
        audio += talk.take(total) * talk_volume
        return np.clip(audio, -1, 1), []
    if index is None:
        raise DataError("a stream of commands needs data_dir (a Speech Commands tree)")
    pool = [c for c in index.clips if c.split == split]
    commands = [c for c in pool if c.word in COMMANDS10]
    others = [c for c in pool if c.word not in COMMANDS10]
    if not commands:
        raise DataError(f"{data_dir}: no command clips in the {split} split")
    decks = {True: [], False: []}  # shuffled draws without replacement, refilled when empty

    def draw(other: bool):
        if not decks[other]:
            source = others if other else commands
            decks[other] = [source[i] for i in rng.permutation(len(source))]
        return decks[other].pop()

    margin = int(talk_margin_ms * SAMPLE_RATE / 1000)
    events: list[Event] = []
    prev_end = 0
    pos = int(rng.uniform(*gap_ms) * SAMPLE_RATE / 1000)
    bar = tqdm(total=total // SAMPLE_RATE, desc="building stream", unit="s", disable=not progress)
    while pos + SAMPLE_RATE <= total:
        use_unknown = bool(others) and rng.random() < unknown_share
        clip = draw(use_unknown)
        x, _ = read_audio(index.root / clip.rel, SAMPLE_RATE)
        x = x[:SAMPLE_RATE]
        if talk is not None and pos - margin - (prev_end + margin) > SAMPLE_RATE // 2:
            a, b = prev_end + margin, pos - margin
            audio[a:b] += talk.take(b - a) * talk_volume
        audio[pos : pos + len(x)] += x
        end = int(speech_bounds(x, SAMPLE_RATE // 100)[1])
        events.append(Event(UNKNOWN if use_unknown else clip.word, 1000.0 * pos / SAMPLE_RATE,
                            1000.0 * (pos + end) / SAMPLE_RATE))
        prev_end = pos + len(x)
        bar.update((prev_end - bar.n * SAMPLE_RATE) // SAMPLE_RATE)
        pos = prev_end + int(rng.uniform(*gap_ms) * SAMPLE_RATE / 1000)
    bar.close()
    return np.clip(audio, -1, 1), events


def write_truth(events: list[Event], path: str | os.PathLike) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "time_ms", "end_ms"])
        for e in events:  # sample-exact at 16 kHz
            w.writerow([e.label, round(e.time_ms, 4), "" if e.end_ms is None else round(e.end_ms, 4)])


def read_truth(path: str | os.PathLike) -> list[Event]:
    """label,time_ms[,end_ms] rows (a header line is optional)."""
    events = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row or (i == 0 and row[0].strip().lower() == "label"):
                continue
            try:
                end = float(row[2]) if len(row) > 2 and row[2].strip() else None
                events.append(Event(row[0].strip(), float(row[1]), end))
            except (IndexError, ValueError):
                raise DataError(f"{path}:{i + 1}: expected 'label,time_ms[,end_ms]', got {row}") from None
    return sorted(events, key=lambda e: e.time_ms)
