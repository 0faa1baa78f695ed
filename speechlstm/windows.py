"""Read-speech negatives for streaming. In a stream the 1 s window slides over
continuous speech as well as over commands; clips from the dataset hold one
centred word, so a model trained on them alone fires on read speech.
``StreamWindows`` adds to every batch ``talk_ratio`` (per row) 1 s crops of read
speech whose transcripts hold no command word, labelled ``_unknown_``; a share of
them can be drawn around the false alarms a trained model gives on that speech
(``mining.py``). Every random draw comes from the generator passed in.

(Rewriting the batch's own rows the way a sliding window sees them, words placed
anywhere, cut at an edge or run together, with speech beside them, was measured
for issue 13 and not kept: docs/research.md.)"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .audio import read_audio
from .corpus import read_utterances
from .errors import ConfigError
from .labels import COMMANDS10, UNKNOWN


@dataclass(frozen=True)
class WindowConfig:
    """``train.windows``: read-speech rows (``--talk``, no command words) as ``_unknown_``."""

    talk_ratio: float = 0.0  # extra rows of read speech per batch row

    def __post_init__(self) -> None:
        if self.talk_ratio < 0:
            raise ConfigError(f"talk_ratio must be >= 0, got {self.talk_ratio}")


def load_talk(root: str | os.PathLike, sample_rate: int, max_minutes: float | None = None,
              progress: bool = True) -> np.ndarray:
    """Read speech whose transcript holds none of the ten commands, as one int16
    array (utterances back to back), at most ``max_minutes``."""
    utts = read_utterances(root, without_words=COMMANDS10)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        parts, total = [], 0
        for x, _ in tqdm(pool.map(lambda u: read_audio(u.path, sample_rate), utts), total=len(utts),
                         desc="reading talk", unit="utt", disable=not progress):
            parts.append(np.round(x * 32767).astype(np.int16))
            total += len(x)
            if max_minutes is not None and total >= max_minutes * 60 * sample_rate:
                break
    return np.concatenate(parts)


class StreamWindows:
    def __init__(self, cfg: WindowConfig, labels: list[str], sample_rate: int, talk: np.ndarray | None = None,
                 hard_starts: np.ndarray | None = None, hard_share: float = 0.0):
        """``talk``: int16 read speech (``load_talk``); ``hard_starts``: start samples of
        mined false alarms in it (``mining.mine_false_alarms``); ``hard_share`` of the
        read-speech rows are drawn around them."""
        self.cfg, self.sample_rate, self.hard_share = cfg, sample_rate, hard_share
        self.unknown = labels.index(UNKNOWN)
        self.talk = torch.from_numpy(talk) if talk is not None and len(talk) else None
        self.hard = torch.from_numpy(np.asarray(hard_starts, np.int64)) if hard_starts is not None else None

    @property
    def active(self) -> bool:
        return self.cfg.talk_ratio > 0 and self.talk is not None

    def _talk_crops(self, n: int, length: int, gen: torch.Generator) -> torch.Tensor:
        start = (torch.rand(n, generator=gen) * (len(self.talk) - length)).long()
        if self.hard is not None and len(self.hard) and self.hard_share > 0:
            hard = torch.rand(n, generator=gen) < self.hard_share
            pick = self.hard[torch.randint(len(self.hard), (n,), generator=gen)]
            jitter = torch.randint(-self.sample_rate // 10, self.sample_rate // 10 + 1, (n,), generator=gen)
            start = torch.where(hard, (pick + jitter).clamp(0, len(self.talk) - length), start)  # +-100 ms
        crops = self.talk[start.unsqueeze(1) + torch.arange(length)].float() / 32767.0  # (n, S)
        return crops * (10.0 ** (torch.rand(n, 1, generator=gen) * -1.0))  # 0 to -20 dB

    def __call__(self, wave: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """wave (B, S), labels (B,) on the CPU -> (B + n, S) waves and (B + n,) labels,
        n = round(talk_ratio * B) read-speech rows, all ``_unknown_``."""
        if not self.active:
            return wave, y
        B, S = wave.shape
        n = max(1, round(self.cfg.talk_ratio * B))
        out = torch.cat([wave, self._talk_crops(n, S, gen)])
        label = torch.cat([y, torch.full((n,), self.unknown, dtype=y.dtype)])
        return out.clamp(-1, 1), label
