"""False-alarm mining: the windows of command-free read speech that a trained
model takes for a command, and the other words it takes for one. Training
draws a share of its read-speech negatives from the first
(``train.talk_hard_share``) and a share of its other-word clips from the
second (``train.extra_hard_share``; both with ``train --mine-with CKPT``), the
way wake-word trainers feed a model its own false positives back."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from .data import COMMANDS10
from .infer import Recognizer


def _best_command(recognizer: Recognizer, clips: np.ndarray) -> np.ndarray:
    """(B, S) int16 clips -> (B,) the highest command probability of each."""
    commands = [i for i, name in enumerate(recognizer.labels) if name in COMMANDS10]
    return recognizer.probabilities(np.asarray(clips, np.float32) / 32767.0)[:, commands].max(axis=1)


def mine_false_alarms(recognizer: Recognizer, talk: np.ndarray, hop_ms: float = 100.0, min_score: float = 0.3,
                      batch: int = 256, progress: bool = True) -> np.ndarray:
    """``talk``: int16 samples at the model rate, speech that holds no command.
    Every ``hop_ms`` the model hears one clip of it; returns the start samples
    (int64, ascending) of the clips where a command's probability reaches
    ``min_score``."""
    if hop_ms <= 0 or batch <= 0:
        raise ValueError(f"hop_ms and batch must be positive, got {hop_ms} and {batch}")
    size = recognizer.clip_samples
    if len(talk) < size or not any(name in COMMANDS10 for name in recognizer.labels):
        return np.zeros(0, np.int64)
    hop = max(1, round(recognizer.sample_rate * hop_ms / 1000))
    starts = np.arange(0, len(talk) - size + 1, hop, dtype=np.int64)
    scores = np.empty(len(starts), np.float32)
    offsets = np.arange(size)
    for i in tqdm(range(0, len(starts), batch), desc="mining false alarms", unit="batch", disable=not progress):
        scores[i : i + batch] = _best_command(recognizer, talk[starts[i : i + batch, None] + offsets])  # (B, S)
    return starts[scores >= min_score]


def confusable_weights(recognizer: Recognizer, clips: np.ndarray, words: list[str], min_score: float = 0.3,
                       batch: int = 256, progress: bool = True) -> tuple[np.ndarray, dict[str, int]]:
    """``clips``: (N, clip_samples) int16 clips of other words (anything sliced that way,
    e.g. ``data.CachedClips``), ``words[i]`` the word of
    clip i. A word is confusable when the model gives a command at least ``min_score``
    on some of its clips; its weight is that count, spread evenly over all its clips
    (every "now" is drawn, not only the few that fired, so that the lesson is the
    word and not those recordings). Returns (per-clip weights (N,) float64 summing to
    1, or all zero when nothing fired; {word: clips that fired}, most first)."""
    if len(clips) != len(words):
        raise ValueError(f"{len(clips)} clips but {len(words)} words")
    fired = np.zeros(len(clips), bool)
    for i in tqdm(range(0, len(clips), batch), desc="mining confusable words", unit="batch", disable=not progress):
        fired[i : i + batch] = _best_command(recognizer, clips[i : i + batch]) >= min_score
    names, inverse, sizes = np.unique(np.asarray(words), return_inverse=True, return_counts=True)
    hits = np.bincount(inverse, weights=fired, minlength=len(names))
    weights = hits[inverse] / sizes[inverse]
    total = weights.sum()
    order = np.argsort(-hits, kind="stable")
    return (weights / total if total else weights), {str(names[j]): int(hits[j]) for j in order if hits[j]}
