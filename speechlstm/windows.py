"""Streaming-aware training windows. In a stream the 1 s window slides over
each word: most windows the model sees hold part of a word, a word at an
edge, or a word with other speech around it. Clips from the dataset hold
one centred word, so a model trained on them alone fires on partial words
and on read speech. ``StreamWindows`` rewrites a batch so that training sees
what streaming sees, with one overlap rule for the labels:

- a command whose speech is at least ``keep_fraction`` inside the window keeps
  its label (placed anywhere, also at the very edge: it fires as soon as the
  word is complete);
- one with at most ``unknown_fraction`` inside is ``_unknown_`` (a partial word
  must not fire); in between the row is left out of the loss (ambiguous);
- other speech beside a complete command (read speech or another clip's
  word, kept clear of it) does not change its label;
- 1 s crops of continuous read speech with no command word in the
  transcript (``talk``) are extra ``_unknown_`` rows;
- two different commands run together, the first half of one and the second
  half of the other (``join_prob``), are ``_unknown_``: a hard negative that
  sounds like a command at every instant.

Word extent comes from ``audio.speech_bounds`` (energy within 30 dB of the
clip's loudest 10 ms). Every random draw comes from the generator passed in."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm.auto import tqdm

from .audio import read_audio, speech_bounds
from .config import TrainConfig
from .corpus import librispeech_utterances
from .labels import COMMANDS10


def load_talk(root: str | os.PathLike, sample_rate: int, max_minutes: float | None = None,
              progress: bool = True) -> np.ndarray:
    """Read speech whose transcript holds none of the ten commands, as one int16
    array (utterances back to back), at most ``max_minutes``."""
    utts = librispeech_utterances(root, without_words=COMMANDS10)
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
    def __init__(self, cfg: TrainConfig, labels: list[str], sample_rate: int, talk: np.ndarray | None = None,
                 hard_starts: np.ndarray | None = None):
        """``hard_starts``: start samples of mined false alarms in ``talk``
        (``mining.mine_false_alarms``); ``cfg.talk_hard_share`` of the read-speech
        rows are drawn around them."""
        self.cfg, self.sample_rate = cfg, sample_rate
        self.unknown = labels.index("_unknown_")
        self.silence = labels.index("_silence_")
        self.commands = torch.tensor([name in COMMANDS10 for name in labels])
        self.talk = torch.from_numpy(talk) if talk is not None and len(talk) else None
        self.hard = torch.from_numpy(np.asarray(hard_starts, np.int64)) if hard_starts is not None else None

    @property
    def active(self) -> bool:
        c = self.cfg
        return c.stream_place_prob + c.stream_cut_prob + c.stream_context_prob + c.join_prob > 0 or (
            c.talk_ratio > 0 and self.talk is not None)

    def _talk_crops(self, n: int, length: int, gen: torch.Generator) -> torch.Tensor:
        start = (torch.rand(n, generator=gen) * (len(self.talk) - length)).long()
        if self.hard is not None and len(self.hard) and self.cfg.talk_hard_share > 0:
            hard = torch.rand(n, generator=gen) < self.cfg.talk_hard_share
            pick = self.hard[torch.randint(len(self.hard), (n,), generator=gen)]
            jitter = torch.randint(-self.sample_rate // 10, self.sample_rate // 10 + 1, (n,), generator=gen)
            start = torch.where(hard, (pick + jitter).clamp(0, len(self.talk) - length), start)  # +-100 ms
        crops = self.talk[start.unsqueeze(1) + torch.arange(length)].float() / 32767.0  # (n, S)
        return crops * (10.0 ** (torch.rand(n, 1, generator=gen) * -1.0))  # 0 to -20 dB

    def _join(self, out: torch.Tensor, label: torch.Tensor, rows: torch.Tensor, start: torch.Tensor,
              d: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``rows`` become the first half of their word followed at once by the
        second half of another row's different command, labelled ``_unknown_``."""
        src, words = out, label  # halves come from the words as they were before any joining
        out, label = out.clone(), label.clone()
        S = out.shape[1]
        commands = torch.nonzero(self.commands[words]).flatten()
        for i in torch.nonzero(rows).flatten().tolist():
            others = commands[words[commands] != words[i]]
            if not len(others):
                continue
            j = int(others[torch.randint(len(others), (1,), generator=gen)])
            a_i, a_j = int(start[i]), int(start[j])  # words as they are in ``out`` now
            head = src[i, max(0, a_i) : max(0, a_i + int(d[i]) // 2)]
            tail = src[j, max(0, a_j + int(d[j]) // 2) : min(S, a_j + int(d[j]))]
            joined = torch.cat([head, tail])[:S]
            at = max(0, min(S - len(joined), a_i))
            row = torch.zeros(S)
            row[at : at + len(joined)] = joined
            out[i], label[i] = row, self.unknown
        return out, label

    def __call__(self, wave: torch.Tensor, y: torch.Tensor,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """wave (B, S), labels (B,) on the CPU -> (B', S) waves, (B',) labels and
        (B',) loss weights (0: left out), B' = B + the talk rows."""
        cfg = self.cfg
        B, S = wave.shape
        a, b = speech_bounds(wave.numpy(), self.sample_rate // 100)
        a, b = torch.from_numpy(a), torch.from_numpy(b)
        d = (b - a).clamp(min=1)
        speech = y != self.silence
        u = torch.rand(B, generator=gen)
        place = speech & (u < cfg.stream_place_prob)
        cut = speech & (u >= cfg.stream_place_prob) & (u < cfg.stream_place_prob + cfg.stream_cut_prob)
        # new start of the word: anywhere it fits (place), or hanging over an edge (cut)
        start = a.clone()
        fits = (S - d).clamp(min=0)
        start[place] = (torch.rand(B, generator=gen) * (fits + 1)).long()[place]
        inside = torch.rand(B, generator=gen) * 0.9 + 0.1  # fraction of the word kept inside, cut rows
        right = torch.rand(B, generator=gen) < 0.5
        hang = ((1 - inside) * d).long()
        start[cut & right] = (S - d + hang)[cut & right]
        start[cut & ~right] = (-hang)[cut & ~right]
        shift = start - a
        idx = torch.arange(S).unsqueeze(0) - shift.unsqueeze(1)  # (B, S)
        out = wave.gather(1, idx.clamp(0, S - 1)) * ((idx >= 0) & (idx < S))
        label, weight = y.clone(), torch.ones(B)
        frac = ((start + d).clamp(max=S) - start.clamp(min=0)).float() / d
        command = self.commands[y] & cut
        label[command & (frac <= cfg.unknown_fraction)] = self.unknown
        weight[command & (frac > cfg.unknown_fraction) & (frac < cfg.keep_fraction)] = 0.0
        join = self.commands[y] & ~cut & (torch.rand(B, generator=gen) < cfg.join_prob)
        if join.any():
            out, label = self._join(out, label, join, start, d, gen)
        # speech beside complete words: read speech or another row's clip, clear of the word
        context = speech & ~cut & ~join & (torch.rand(B, generator=gen) < cfg.stream_context_prob)
        if context.any():
            gap = self.sample_rate // 20  # 50 ms of air between
            pos = torch.arange(S).unsqueeze(0)
            free = (pos < (start - gap).unsqueeze(1)) | (pos >= (start + d + gap).unsqueeze(1))
            if self.talk is not None:
                other = self._talk_crops(B, S, gen)
            else:
                other = wave[torch.randperm(B, generator=gen)]
            gain = 10.0 ** (torch.rand(B, 1, generator=gen) * -1.0)
            out = torch.where((context.unsqueeze(1) & free), out + gain * other, out)
        if cfg.talk_ratio > 0 and self.talk is not None:
            n = max(1, round(cfg.talk_ratio * B))
            out = torch.cat([out, self._talk_crops(n, S, gen)])
            label = torch.cat([label, torch.full((n,), self.unknown, dtype=label.dtype)])
            weight = torch.cat([weight, torch.ones(n)])
        return out.clamp(-1, 1), label, weight
