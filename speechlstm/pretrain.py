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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .audio import read_audio
from .augment import Augmenter
from .checkpoint import ENCODER_PREFIXES, Encoder, save_encoder
from .config import FeatureConfig, ModelConfig, PretrainConfig, TrainConfig
from .corpus import librispeech_utterances
from .errors import DataError
from .model import KeywordBiLSTM, count_parameters, resolve_device
from .train import warmup_cosine

# PocketSphinx's US-English phone set (ARPAbet, no stress) and silence; its fillers (+NSN+, ...) count as SIL
PHONES = ("SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
          "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W",
          "Y", "Z", "ZH")
LABEL_MS = 10.0  # resolution of the stored phone labels (PocketSphinx's frame)


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
        utts = [u for u in librispeech_utterances(corpus) if u.path.name.split(".")[0] in rows]
        if not utts:
            raise DataError(f"{corpus}: none of the aligned utterances of {path} is there")
        index = {p: i for i, p in enumerate(PHONES)}

        def one(utt):
            x, _ = read_audio(utt.path, sample_rate)
            labels = np.zeros(math.ceil(len(x) / sample_rate * 1000 / LABEL_MS), dtype=np.int64)  # SIL
            for name, start_ms, end_ms in rows[utt.path.name.split(".")[0]]["phones"]:
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
        logits = model(model.net.features(waves[i : i + batch_size].to(device)))
        correct += (logits.argmax(-1).cpu() == labels[i : i + batch_size]).sum().item()
    return correct / max(1, labels.numel())


def pretrain(corpus: str | os.PathLike, aligned: str | os.PathLike, out: str | os.PathLike,
             cfg: PretrainConfig = PretrainConfig(), features: FeatureConfig = FeatureConfig(),
             model_cfg: ModelConfig = ModelConfig(), *, noise_dir: str | os.PathLike | None = None,
             device: str = "auto", progress: bool = True, max_steps: int | None = None) -> dict[str, float]:
    """Pretrain the encoder on ``corpus`` aligned into ``aligned`` and write the
    best epoch (held-out speakers' frame accuracy) to ``out``. Returns its metrics."""
    out, dev = Path(out), resolve_device(device)
    started = time.time()
    data = PhoneCorpus.load(corpus, aligned, features.sample_rate, progress)
    val_mask = [held_out(s, cfg.validation_pct) for s in data.speakers]
    train_set, val_set = data.subset([not v for v in val_mask]), data.subset(val_mask)
    if not train_set.audio or not val_set.audio:
        raise DataError(f"{aligned}: too few speakers to hold {cfg.validation_pct}% out "
                        f"({len(set(data.speakers))} speakers)")
    noise = [read_audio(p, features.sample_rate)[0] for p in sorted(Path(noise_dir).glob("*.wav"))] \
        if noise_dir is not None else []
    steps, step_ms = encoder_steps(features, model_cfg)
    val_waves, val_labels = val_set.windows(min(2000, max(256, int(val_set.seconds))), features.clip_samples,
                                            step_ms, steps, np.random.default_rng([cfg.seed, 1]))
    torch.manual_seed(cfg.seed)
    model = PhoneticModel(features, model_cfg, len(PHONES)).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(cfg.windows_per_second * train_set.seconds / cfg.batch_size)
    if max_steps:
        steps_per_epoch = min(steps_per_epoch, max_steps)
    total, warmup = cfg.epochs * steps_per_epoch, max(1, int(cfg.warmup_epochs * steps_per_epoch))
    sched = warmup_cosine(opt, warmup, total)
    # timing-preserving augmentation only: no speed change, no shift, no reverberation tail
    augment = Augmenter(TrainConfig(noise_prob=cfg.noise_prob, snr_db=cfg.snr_db, gain_db=cfg.gain_db, speed=0.0,
                                    shift_ms=0.0, reverb_prob=0.0), features, noise, dev)
    tqdm.write(f"pretraining the encoder on {dev}: {count_parameters(model):,} parameters, "
               f"{train_set.seconds / 3600:.2f} h of speech from {len(set(train_set.speakers))} speakers "
               f"({val_set.seconds / 60:.0f} min from {len(set(val_set.speakers))} held out), "
               f"{steps} steps of {step_ms:g} ms per window")
    best = {"val_frame_acc": -1.0}
    for epoch in range(cfg.epochs):
        rng = np.random.default_rng([cfg.seed, epoch, 2])
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        model.train()
        t0, loss_sum, correct, seen = time.time(), 0.0, 0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"pretrain epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not progress)
        for _ in bar:
            wave, y = train_set.windows(cfg.batch_size, features.clip_samples, step_ms, steps, rng)
            wave, y = augment.wave(wave.to(dev), gen), y.to(dev)
            feats = augment.spec(model.net.features(wave), gen)  # (B, T, n_mfcc)
            logits = model(feats)  # (B, T', n_phones)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            loss_sum += loss.item() * y.numel()
            correct += (logits.argmax(-1) == y).sum().item()
            seen += y.numel()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        val_acc = frame_accuracy(model, val_waves, val_labels, dev)
        improved = val_acc > best["val_frame_acc"]
        if improved:
            best = {"val_frame_acc": round(val_acc, 5), "train_frame_acc": round(correct / max(1, seen), 5),
                    "best_epoch": epoch + 1}
            save_encoder(Encoder(features, model_cfg, cfg, list(PHONES), model.encoder_state(), best, {
                "corpus": str(Path(corpus).resolve()), "aligned": str(Path(aligned).resolve()),
                "hours": round(train_set.seconds / 3600, 3), "speakers": len(set(train_set.speakers)),
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "torch": str(torch.__version__), "device": str(dev),
                "train_seconds": round(time.time() - started, 1)}), out)
        tqdm.write(f"pretrain epoch {epoch + 1:3d}  loss {loss_sum / max(1, seen):.3f}  frame acc "
                   f"{correct / max(1, seen):.3f}  held-out frame acc {val_acc:.4f}{'  *' if improved else ''}  "
                   f"({time.time() - t0:.1f}s)")
    tqdm.write(f"best epoch {best['best_epoch']}: held-out frame accuracy {best['val_frame_acc']:.4f} -> {out}")
    return best
