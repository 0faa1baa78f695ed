"""Phonetic pretraining of the encoder. Speech Commands has a few thousand
labelled clips; a corpus of read speech force-aligned by ``speechlstm corpus``
has hours of speech with a phone at every 10 ms. The same encoder the
classifier uses (MFCC -> convolution -> BiLSTM, ``KeywordBiLSTM.encode``)
learns to name the phone at each of its steps in 1 s windows of that speech;
``speechlstm train --init-from`` then starts the command classifier from it.

Windows are drawn at random inside utterances; a fixed share of the speakers
(a hash of the id) is held out and chooses the best epoch by frame accuracy.
Waveform augmentation keeps timing intact (gain and background noise only):
the labels are times."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .audio import read_audio
from .augment import AugmentConfig, Augmenter
from .checkpoint import ENCODER_PREFIXES, Encoder, save_encoder
from .config import FeatureConfig, ModelConfig, from_dict, to_dict
from .corpus import read_utterances
from .errors import ConfigError, DataError
from .loop import Distributed, OptimConfig, Step, fit, place
from .model import KeywordBiLSTM, count_parameters

# PocketSphinx's US-English phone set (ARPAbet, no stress) and silence; its fillers (+NSN+, ...) count as SIL
PHONES = ("SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
          "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W",
          "Y", "Z", "ZH")
LABEL_MS = 10.0  # resolution of the stored phone labels (PocketSphinx's frame)


@dataclass(frozen=True)
class PretrainConfig:
    """Phonetic pretraining (``pretrain`` in an encoder file or recipe). Waveform
    augmentation keeps timing intact: no speed change, shift or room by default."""

    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=10, warmup_epochs=0.5))
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(speed=0.0, shift_ms=0.0))
    validation_pct: float = 10.0  # speakers held out (by a hash of the id) to choose the best epoch
    windows_per_second: float = 1.0  # training windows per epoch per second of training audio

    def __post_init__(self) -> None:
        if self.windows_per_second <= 0 or not 0 < self.validation_pct < 100:
            raise ConfigError("need windows_per_second > 0 and validation_pct in (0, 100)")
        if self.augment.mixup_alpha > 0:
            raise ConfigError("pretraining labels every step with a phone: no mixup")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "PretrainConfig":
        return from_dict(cls, data)


def held_out(speaker: str, pct: float) -> bool:
    """A fixed share of speakers by a hash of the id: the pretraining validation set."""
    return int(hashlib.sha1(f"pretrain|{speaker}".encode()).hexdigest(), 16) % 10_000 < pct * 100


@dataclass
class PhoneCorpus:
    """Aligned utterances in memory: int16 audio and one phone id every 10 ms."""

    audio: list[np.ndarray]  # per utterance (S,) int16
    phones: list[np.ndarray]  # per utterance (S / 160,) int64
    speakers: list[str]
    sample_rate: int

    @classmethod
    def load(cls, corpus: str | os.PathLike, aligned: str | os.PathLike, sample_rate: int,
             progress: bool = True) -> "PhoneCorpus":
        """``corpus``: the LibriSpeech-layout root; ``aligned``: what ``speechlstm corpus``
        wrote for it (its ``alignments.jsonl``)."""
        path = Path(aligned)
        path = path / "alignments.jsonl" if path.is_dir() else path
        if not path.is_file():
            raise DataError(f"{path}: no alignments (run `speechlstm corpus CORPUS --out DIR` first)")
        rows = {}
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("phones"):
                rows[row["id"]] = row
        if not rows:
            raise DataError(f"{path}: no phone alignments (rerun `speechlstm corpus` with this version)")
        utts = [u for u in read_utterances(corpus) if u.key in rows]
        if not utts:
            raise DataError(f"{corpus}: none of the aligned utterances of {path} is there")
        index = {p: i for i, p in enumerate(PHONES)}

        def one(utt):
            x, _ = read_audio(utt.path, sample_rate)
            labels = np.zeros(math.ceil(len(x) / sample_rate * 1000 / LABEL_MS), dtype=np.int64)  # SIL
            for name, start_ms, end_ms in rows[utt.key]["phones"]:
                labels[int(start_ms / LABEL_MS) : int(end_ms / LABEL_MS)] = index.get(name, 0)
            return np.round(x * 32767).astype(np.int16), labels

        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            loaded = list(tqdm(pool.map(one, utts), total=len(utts), desc="reading aligned speech", unit="utt",
                               disable=not progress))
        return cls([a for a, _ in loaded], [p for _, p in loaded], [u.speaker for u in utts], sample_rate)

    def subset(self, keep: list[bool]) -> "PhoneCorpus":
        pick = [i for i, k in enumerate(keep) if k]
        return PhoneCorpus([self.audio[i] for i in pick], [self.phones[i] for i in pick],
                           [self.speakers[i] for i in pick], self.sample_rate)

    @property
    def seconds(self) -> float:
        return sum(len(a) for a in self.audio) / self.sample_rate

    def windows(self, n: int, clip_samples: int, step_ms: float, steps: int,
                rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random 1 s windows: waves (n, clip_samples) float32 and the phone at
        each encoder step (n, steps), step ``i`` centred ``i * step_ms`` into the window."""
        lengths = np.array([len(a) for a in self.audio], dtype=np.float64)
        usable = np.maximum(lengths - clip_samples, 0) + 1
        utt = rng.choice(len(self.audio), size=n, p=usable / usable.sum())
        waves = np.zeros((n, clip_samples), dtype=np.float32)
        labels = np.zeros((n, steps), dtype=np.int64)
        at_ms = np.arange(steps) * step_ms
        for row, u in enumerate(utt):
            start = int(rng.integers(usable[u]))
            crop = self.audio[u][start : start + clip_samples]
            waves[row, : len(crop)] = crop / 32767.0
            frame = ((start / self.sample_rate * 1000 + at_ms) / LABEL_MS).astype(np.int64)
            labels[row] = self.phones[u][np.minimum(frame, len(self.phones[u]) - 1)]
        return torch.from_numpy(waves), torch.from_numpy(labels)


class PhoneticModel(nn.Module):
    """The classifier's encoder with a phone head on every step: waves (B, S) -> (B, T', n_phones)."""

    def __init__(self, features: FeatureConfig, model: ModelConfig, n_phones: int):
        super().__init__()
        self.net = KeywordBiLSTM(features, model, n_classes=1)  # its pooling and head are not trained here
        self.phone_head = nn.Linear(2 * model.hidden_size, n_phones)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.phone_head(self.net.dropout(self.net.encode(feats)))  # (B, T', n_phones)

    def listen(self, wave: torch.Tensor, augment: Augmenter | None = None,
               gen: torch.Generator | None = None) -> torch.Tensor:
        """waves (B, S) -> MFCC (SpecAugment with ``augment``) -> (B, T', n_phones)."""
        feats = self.net.features(wave)  # (B, T, n_mfcc)
        return self(augment.spec(feats, gen) if augment is not None else feats)

    def encoder_state(self) -> dict[str, torch.Tensor]:
        state = {k: v for k, v in self.net.state_dict().items() if k.startswith(ENCODER_PREFIXES)}
        return {**state, **{f"phone_head.{k}": v for k, v in self.phone_head.state_dict().items()}}


def encoder_steps(features: FeatureConfig, model: ModelConfig) -> tuple[int, float]:
    """(steps per window, ms between steps) of the encoder for one clip."""
    net = KeywordBiLSTM(features, model, n_classes=1).eval()
    with torch.no_grad():
        steps = net.encode(net.features(torch.zeros(1, features.clip_samples))).shape[1]
    return steps, features.hop_ms * (model.conv_stride if model.conv_channels else 1)


@torch.no_grad()
def frame_accuracy(model: PhoneticModel, waves: torch.Tensor, labels: torch.Tensor, device: torch.device,
                   batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(waves), batch_size):
        logits = model.listen(waves[i : i + batch_size].to(device))
        correct += (logits.argmax(-1).cpu() == labels[i : i + batch_size]).sum().item()
    return correct / max(1, labels.numel())


class _Listener(nn.Module):
    """The training forward pass (what DDP wraps): waves -> augmented MFCC -> phone logits."""

    def __init__(self, model: PhoneticModel, augment: Augmenter):
        super().__init__()
        self.model, self.augment = model, augment

    def forward(self, wave: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.model.listen(wave, self.augment, gen)


class PhoneJob:
    """Random 1 s windows of aligned speech and a phone loss at every encoder step (``loop.Job``)."""

    score = "val_frame_acc"
    unused_parameters = True  # the classifier's pooling and head sit in the encoder, untrained here

    def __init__(self, model: PhoneticModel, cfg: PretrainConfig, train_set: PhoneCorpus, val: tuple,
                 features: FeatureConfig, steps: tuple[int, float], augment: Augmenter, device: torch.device, save):
        """``steps``: the encoder's (steps per window, ms between steps), ``encoder_steps``."""
        self.model, self.forward = model, _Listener(model, augment)
        self.cfg, self.train_set, self.val, self.device, self.save = cfg, train_set, val, device, save
        self.augment, self.clip_samples = augment, features.clip_samples
        self.steps, self.step_ms = steps

    def steps_per_epoch(self, dist: Distributed) -> int:
        per_rank = self.cfg.windows_per_second * self.train_set.seconds / dist.world_size
        return math.ceil(per_rank / self.cfg.optim.batch_size)

    def batches(self, epoch: int, rng: np.random.Generator, dist: Distributed) -> Iterator:
        rng = np.random.default_rng([self.cfg.optim.seed, epoch, 2, dist.rank])  # each rank its own windows
        while True:
            yield self.train_set.windows(self.cfg.optim.batch_size, self.clip_samples, self.step_ms, self.steps, rng)

    def step(self, net: nn.Module, batch, gen: torch.Generator, rng: np.random.Generator,
             ctx: Step) -> tuple[torch.Tensor, int, int]:
        wave, y = batch  # (B, S), (B, T') phone ids
        wave, y = self.augment.wave(wave.to(self.device), gen), y.to(self.device)
        with ctx.autocast():
            logits = net(wave, gen)  # (B, T', n_phones)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(),
                                   label_smoothing=self.cfg.optim.label_smoothing)
        return loss, (logits.argmax(-1) == y).sum().item(), y.numel()

    def validate(self, model: nn.Module) -> dict[str, float]:
        return {"val_frame_acc": frame_accuracy(model, *self.val, self.device)}


def pretrain(corpus: str | os.PathLike, aligned: str | os.PathLike, out: str | os.PathLike,
             cfg: PretrainConfig = PretrainConfig(), features: FeatureConfig = FeatureConfig(),
             model_cfg: ModelConfig = ModelConfig(), *, noise_dir: str | os.PathLike | None = None,
             device: str = "auto", resume: bool = False, progress: bool = True,
             max_steps: int | None = None) -> dict[str, float]:
    """Pretrain the encoder on ``corpus`` aligned into ``aligned`` and write the
    best epoch (held-out speakers' frame accuracy) to ``out``. Returns its metrics."""
    out, started = Path(out), time.time()
    dist, dev = place(device)
    data = PhoneCorpus.load(corpus, aligned, features.sample_rate, progress and dist.main)
    val_mask = [held_out(s, cfg.validation_pct) for s in data.speakers]
    train_set, val_set = data.subset([not v for v in val_mask]), data.subset(val_mask)
    if not train_set.audio or not val_set.audio:
        raise DataError(f"{aligned}: too few speakers to hold {cfg.validation_pct}% out "
                        f"({len(set(data.speakers))} speakers)")
    noise = [read_audio(p, features.sample_rate)[0] for p in sorted(Path(noise_dir).glob("*.wav"))] \
        if noise_dir is not None else []
    steps, step_ms = encoder_steps(features, model_cfg)
    val = val_set.windows(min(2000, max(256, int(val_set.seconds))), features.clip_samples, step_ms, steps,
                          np.random.default_rng([cfg.optim.seed, 1]))
    torch.manual_seed(cfg.optim.seed)
    model = PhoneticModel(features, model_cfg, len(PHONES)).to(dev)

    def save(judged: nn.Module, row: dict[str, Any]) -> None:
        metrics = {"val_frame_acc": round(row["val_frame_acc"], 5), "train_frame_acc": row["train_acc"],
                   "best_epoch": row["best_epoch"]}
        save_encoder(Encoder(features, model_cfg, to_dict(cfg), list(PHONES), judged.encoder_state(), metrics, {
            "corpus": str(Path(corpus).resolve()), "aligned": str(Path(aligned).resolve()),
            "noise": str(Path(noise_dir).resolve()) if noise_dir is not None else None,
            "hours": round(train_set.seconds / 3600, 3), "speakers": len(set(train_set.speakers)),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "torch": str(torch.__version__), "device": str(dev), "world_size": dist.world_size,
            "train_seconds": round(time.time() - started, 1)}), out)

    job = PhoneJob(model, cfg, train_set, val, features, (steps, step_ms), Augmenter(cfg.augment, features, noise, dev),
                   dev, save)
    tqdm.write(f"pretraining the encoder on {dev}: {count_parameters(model):,} parameters, "
               f"{train_set.seconds / 3600:.2f} h of speech from {len(set(train_set.speakers))} speakers "
               f"({val_set.seconds / 60:.0f} min from {len(set(val_set.speakers))} held out), "
               f"{steps} steps of {step_ms:g} ms per window")
    configs = {"features": to_dict(features), "model": to_dict(model_cfg), "pretrain": to_dict(cfg)}
    best = fit(job, cfg.optim, out, dev, configs, resume=resume, progress=progress, max_steps=max_steps,
               dist=dist, label="pretrain epoch")
    if dist.main:
        tqdm.write(f"best epoch {best['best_epoch']}: held-out frame accuracy {best['val_frame_acc']:.4f} -> {out}")
    dist.barrier()
    return {"val_frame_acc": round(best["val_frame_acc"], 5), "train_frame_acc": best["train_acc"],
            "best_epoch": best["best_epoch"]}
