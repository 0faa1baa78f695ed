"""False-alarm mining: the windows of command-free read speech that a trained
model takes for a command. Training draws a share of its read-speech negatives
from them (``train.mining.share`` with ``mine_with``), the way
wake-word trainers feed a model its own false positives back. (Drawing the other
words a model takes for a command more often was tried for issue 13 and not
kept: docs/research.md, "Confusable words".)"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .errors import ConfigError
from .infer import Recognizer
from .labels import COMMANDS10


@dataclass(frozen=True)
class MiningConfig:
    """``train.mining``: ``share`` of the read-speech rows drawn from the windows where the
    ``mine_with`` model gives a command at least ``min_score`` (0: no mining)."""

    share: float = 0.0
    min_score: float = 0.3

    def __post_init__(self) -> None:
        if not (0 <= self.share <= 1 and 0 <= self.min_score <= 1):
            raise ConfigError("mining share and min_score must be in [0, 1]")


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
