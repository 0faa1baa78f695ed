"""Streaming evaluation, like TensorFlow's test_streaming_accuracy: build a
long recording from real clips over background noise with ground truth, run
the StreamingRecognizer over it, and score detections against the truth."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .audio import read_audio
from .data import COMMANDS10, UNKNOWN, SpeechCommandsIndex
from .errors import DataError
from .stream import Detection, StreamingRecognizer


@dataclass(frozen=True)
class Event:
    label: str  # a command, or _unknown_ for other speech
    time_ms: float  # where the 1 s clip starts in the recording


def make_stream(data_dir: str | os.PathLike, split: str = "test", minutes: float = 1.0, seed: int = 0,
                sample_rate: int = 16000, gap_ms: tuple[float, float] = (1500.0, 3000.0),
                unknown_share: float = 0.2, noise_volume: float = 0.1) -> tuple[np.ndarray, list[Event]]:
    """A recording of ``minutes`` with a clip every 2.5-4 s (1 s clip + gap)
    over continuous background noise. Returns (samples, ground truth)."""
    index = SpeechCommandsIndex.scan(data_dir)
    rng = np.random.default_rng(seed)
    pool = [c for c in index.clips if c.split == split]
    commands = [c for c in pool if c.word in COMMANDS10]
    others = [c for c in pool if c.word not in COMMANDS10]
    if not commands:
        raise DataError(f"{data_dir}: no command clips in the {split} split")
    total = int(minutes * 60 * sample_rate)
    noise = [read_audio(p, sample_rate)[0] for p in index.noise_files]
    audio = np.zeros(total, dtype=np.float32)
    if noise:  # tile background noise segments over the whole recording
        pos = 0
        while pos < total:
            seg = noise[rng.integers(len(noise))]
            take = min(len(seg), total - pos, 10 * sample_rate)
            start = rng.integers(len(seg) - take + 1)
            audio[pos : pos + take] = seg[start : start + take] * noise_volume
            pos += take
    events: list[Event] = []
    pos = int(rng.uniform(*gap_ms) * sample_rate / 1000)
    while pos + sample_rate <= total:
        use_unknown = others and rng.random() < unknown_share
        clip = (others if use_unknown else commands)[rng.integers(len(others if use_unknown else commands))]
        x, _ = read_audio(index.root / clip.rel, sample_rate)
        x = x[:sample_rate]
        audio[pos : pos + len(x)] += x
        events.append(Event(UNKNOWN if use_unknown else clip.word, 1000.0 * pos / sample_rate))
        pos += sample_rate + int(rng.uniform(*gap_ms) * sample_rate / 1000)
    return np.clip(audio, -1, 1), events


def write_truth(events: list[Event], path: str | os.PathLike) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "time_ms"])
        for e in events:
            w.writerow([e.label, round(e.time_ms, 4)])  # sample-exact at 16 kHz


def read_truth(path: str | os.PathLike) -> list[Event]:
    events = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row or (i == 0 and row[0].strip().lower() == "label"):
                continue
            try:
                events.append(Event(row[0].strip(), float(row[1])))
            except (IndexError, ValueError):
                raise DataError(f"{path}:{i + 1}: expected 'label,time_ms', got {row}") from None
    return sorted(events, key=lambda e: e.time_ms)


def run_stream(streamer: StreamingRecognizer, audio: np.ndarray, chunk: int = 1600,
               progress: bool = True) -> list[Detection]:
    streamer.reset()
    out: list[Detection] = []
    for start in tqdm(range(0, len(audio), chunk), desc="streaming", unit="chunk", disable=not progress):
        out += streamer.push(audio[start : start + chunk])
    return out


def score_stream(detections: list[Detection], truth: list[Event], duration_ms: float,
                 clip_ms: float = 1000.0, tolerance_ms: float = 500.0) -> dict:
    """Match each detection to the spoken clip it fired on.

    A detection at time t (end of its window) belongs to an event at time e
    when e <= t <= e + clip_ms + tolerance_ms. Per command event: matched
    (some detection), correct (the first one has the right label), wrong.
    Detections that belong to no command event are false positives; those
    outside any spoken clip are false alarms, counted per hour of audio
    without commands.
    """
    commands = [e for e in truth if e.label != UNKNOWN]
    used: set[int] = set()
    correct = wrong = 0
    false_pos: list[Detection] = []
    for d in detections:
        hit = next((i for i, e in enumerate(truth)
                    if e.time_ms <= d.time_ms <= e.time_ms + clip_ms + tolerance_ms and i not in used), None)
        if hit is None or truth[hit].label == UNKNOWN:
            false_pos.append(d)
            if hit is not None:
                used.add(hit)
            continue
        used.add(hit)
        if d.label == truth[hit].label:
            correct += 1
        else:
            wrong += 1
    n = max(1, len(commands))
    command_ms = len(commands) * (clip_ms + tolerance_ms)
    quiet_hours = max(1e-9, (duration_ms - command_ms) / 3.6e6)
    on_unknown = sum(1 for d in false_pos
                     if any(e.label == UNKNOWN and e.time_ms <= d.time_ms <= e.time_ms + clip_ms + tolerance_ms
                            for e in truth))
    return {
        "commands": len(commands),
        "unknown_events": len(truth) - len(commands),
        "detections": len(detections),
        "matched_pct": round(100 * (correct + wrong) / n, 2),
        "correct_pct": round(100 * correct / n, 2),
        "wrong_pct": round(100 * wrong / n, 2),
        "false_positive_pct": round(100 * len(false_pos) / n, 2),
        "false_positives_on_unknown_speech": on_unknown,
        "false_alarms_per_hour": round(len(false_pos) / quiet_hours, 2),
        "tolerance_ms": tolerance_ms,
        "duration_s": round(duration_ms / 1000, 1),
    }
