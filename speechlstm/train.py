"""Training the command classifier: the task (``ClassifierJob``: batches of the
dataset, read-speech rows, augmentation, the loss and its terms) that
``loop.fit`` runs, and ``train()``, which gathers its inputs and writes the
checkpoint. Every setting is in ``TrainConfig``, a section per module that reads
it, saved in the checkpoint."""

from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .augment import AugmentConfig, Augmenter
from .checkpoint import Checkpoint, encoder_weights, load_checkpoint, load_initial, save_checkpoint
from .config import FeatureConfig, ModelConfig, from_dict, to_dict
from .data import SamplingConfig, SpeechCommands, SplitSet
from .distill import DistillConfig, Distillation, load_teachers
from .errors import ConfigError
from .infer import Recognizer
from .labels import SILENCE
from .loop import Distributed, OptimConfig, StageClock, Step, fit, metrics_path, place, state_path
from .mining import MiningConfig, mine_false_alarms
from .model import KeywordBiLSTM, count_parameters
from .windows import StreamWindows, WindowConfig, load_talk

__all__ = ["TrainConfig", "train", "evaluate", "held_out_metrics", "metrics_path", "state_path", "StageClock"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything a classifier's training reads, by the module that reads it."""

    task: str = "commands12"
    optim: OptimConfig = field(default_factory=OptimConfig)  # loop.py
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # data.py
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # augment.py
    windows: WindowConfig = field(default_factory=WindowConfig)  # windows.py
    distill: DistillConfig = field(default_factory=DistillConfig)  # distill.py
    mining: MiningConfig = field(default_factory=MiningConfig)  # mining.py

    def __post_init__(self) -> None:
        if self.task not in ("commands12", "words35"):
            raise ConfigError(f"task must be 'commands12' or 'words35', got {self.task!r}")
        if self.sampling.dev_all and self.optim.keep != "last":
            raise ConfigError("train.sampling.dev_all validates on clips it trains on: the best epoch there "
                              "means nothing; set train.optim.keep = \"last\" (the epochs cross-validation chose)")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "TrainConfig":
        return from_dict(cls, data)


@dataclass
class Result:
    checkpoint: Path
    best_epoch: int
    metrics: dict[str, float]


class Student(nn.Module):
    """The training forward pass (what DDP wraps): waves (B, S) -> MFCC (B, T, n_mfcc) ->
    SpecAugment -> logits (B, n_classes); also returns the features the teachers hear."""

    def __init__(self, net: KeywordBiLSTM, augment: Augmenter):
        super().__init__()
        self.net, self.augment = net, augment
        self.mark = lambda stage: None

    def forward(self, wave: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.net.features(wave)  # (B, T, n_mfcc)
        self.mark("MFCC")
        feats = self.augment.spec(feats, gen)
        return self.net.classify(feats), feats


class ClassifierJob:
    """One epoch's batches of the dataset and the classifier's loss (``loop.Job``)."""

    score, unused_parameters = "val_acc", False

    def __init__(self, data: SpeechCommands, net: KeywordBiLSTM, cfg: TrainConfig, augment: Augmenter,
                 windows: StreamWindows | None, terms: list, device: torch.device, save):
        self.data, self.model, self.cfg, self.augment, self.windows = data, net, cfg, augment, windows
        self.forward, self.terms, self.device, self.save = Student(net, augment), terms, device, save
        self.silence = data.labels.index(SILENCE) if SILENCE in data.labels else -1
        self.val = data.split("validation")

    def steps_per_epoch(self, dist: Distributed) -> int:
        per_rank = math.ceil(len(self.data.split("train")) / dist.world_size)  # DistributedSampler's shard
        return math.ceil(per_rank / self.cfg.optim.batch_size)

    def batches(self, epoch: int, rng: np.random.Generator, dist: Distributed) -> Iterator:
        train_set = self.data.split("train", rng)  # a fresh draw of the other words and silence
        return self.data.batches(train_set, self.cfg.optim.batch_size, rng, shuffle=True, rank=dist.rank,
                                 world_size=dist.world_size)

    def step(self, net: nn.Module, batch, gen: torch.Generator, rng: np.random.Generator,
             ctx: Step) -> tuple[torch.Tensor, int, int]:
        wave, y = batch  # (B, S) float32, (B,) on the CPU
        if self.windows is not None:
            wave, y = self.windows(wave, y, gen)  # (B', S), B' = B + read-speech rows
            ctx.mark("read-speech rows")
        wave, y = wave.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        wave = self.augment.wave(wave, gen, skip=(y == self.silence).cpu())
        wave, partner, lam = self.augment.mixup(wave, y, rng, gen)
        ctx.mark("augment waveform")
        self.forward.mark = ctx.mark
        with ctx.autocast():
            logits, feats = net(wave, gen)  # (B', n_classes), (B', T, n_mfcc)
            smoothing = self.cfg.optim.label_smoothing
            loss = F.cross_entropy(logits.float(), y, label_smoothing=smoothing)
            if lam < 1.0:  # mixup: the partners' labels, weighted by their share
                loss = lam * loss + (1 - lam) * F.cross_entropy(logits.float(), partner, label_smoothing=smoothing)
            for term in self.terms:  # distillation
                loss = term(loss, logits, feats)
        ctx.mark("forward: SpecAugment, network, loss")
        return loss, (logits.argmax(1) == y).sum().item(), len(y)

    def validate(self, model: nn.Module) -> dict[str, float]:
        loss, acc, _ = evaluate(model, self.data, self.val, self.device, seed=self.cfg.optim.seed)
        return {"val_loss": loss, "val_acc": acc}


def train(data_dir: str | os.PathLike, out: str | os.PathLike, cfg: TrainConfig = TrainConfig(),
          features: FeatureConfig = FeatureConfig(), model_cfg: ModelConfig = ModelConfig(), *,
          device: str = "auto", resume: bool = False, cache_dir: str | os.PathLike | None = None,
          progress: bool = True, max_steps: int | None = None,
          extra_data: tuple[str | os.PathLike, ...] = (), more_data: tuple[str | os.PathLike, ...] = (),
          talk_dir: str | os.PathLike | None = None,
          init_from: str | os.PathLike | None = None, teachers: tuple[str | os.PathLike, ...] = (),
          mine_with: str | os.PathLike | None = None, clock: StageClock | None = None) -> Result:
    """Train a classifier; write the best-on-validation checkpoint to ``out``, with
    ``<out>.metrics.csv`` (a row per epoch) and ``<out>.train-state.pt`` (what ``resume``
    continues from). Inputs: ``data_dir`` (Speech Commands); ``extra_data`` (word/*.wav
    folders: ``sampling.synth_ratio``, ``sampling.extra_unknown_ratio``); ``more_data`` (more
    Speech Commands clips, minus the testing split's speakers); ``talk_dir`` (read speech,
    ``windows.talk_ratio``); ``init_from`` (a pretrained encoder, a classifier with these
    labels to fine-tune, or another task's classifier: its encoder); ``teachers``
    (``distill``); ``mine_with`` (``mining``). ``max_steps`` caps steps per epoch (smoke
    tests); ``clock`` times every stage of a step."""
    out, started = Path(out), time.time()
    dist, dev = place(device)
    if dist.main:
        out.parent.mkdir(parents=True, exist_ok=True)
    data = SpeechCommands(data_dir, cfg.task, sampling=cfg.sampling, sample_rate=features.sample_rate,
                          clip_samples=features.clip_samples, cache_dir=cache_dir, seed=cfg.optim.seed,
                          progress=progress and dist.main, extra_dirs=tuple(extra_data), more_dirs=tuple(more_data))
    if data.skipped:
        tqdm.write(f"skipped {len(data.skipped)} unreadable clip(s), e.g. {data.skipped[0][0]}: {data.skipped[0][1]}")
    for note in data.capped_shares() if dist.main else ():
        tqdm.write(note)
    torch.manual_seed(cfg.optim.seed)
    net = KeywordBiLSTM(features, model_cfg, len(data.labels)).to(dev)
    if init_from is not None:
        _start_from(net, init_from, features, model_cfg, data.labels)
    terms = [Distillation(cfg.distill, load_teachers(tuple(teachers), data.labels, features, dev))]
    talk, hard = _read_speech(cfg, talk_dir, mine_with, features, dev, progress and dist.main)
    windows = StreamWindows(cfg.windows, data.labels, features.sample_rate, talk, hard, cfg.mining.share) \
        if cfg.task == "commands12" else None  # words35 has no _unknown_ for read speech to be
    sources = {"data_dir": _resolved(data_dir), "talk_dir": _resolved(talk_dir),  # every input, for the provenance
               "extra_data": [_resolved(d) for d in extra_data], "more_data": [_resolved(d) for d in more_data],
               "init_from": _resolved(init_from), "teachers": [_resolved(t) for t in teachers],
               "mine_with": _resolved(mine_with), "world_size": dist.world_size}

    def save(model: nn.Module, row: dict[str, Any]) -> None:
        metrics = {"val_acc": row["val_acc"], "val_loss": row["val_loss"], "best_epoch": row["best_epoch"]}
        _save(out, model, data, features, model_cfg, cfg, sources, dev, metrics, started)

    job = ClassifierJob(data, net, cfg, Augmenter(cfg.augment, features, data.noise, dev),
                        windows if windows is not None and windows.active else None,
                        [t for t in terms if t.active], dev, save)
    configs = {"features": to_dict(features), "model": to_dict(model_cfg), "train": to_dict(cfg)}
    tqdm.write(f"training {cfg.task} on {dev}{f' (rank {dist.rank} of {dist.world_size})' if dist.world_size > 1 else ''}"
               f": {count_parameters(net):,} parameters, {len(data.split('train'))} train / {len(job.val)} "
               f"validation clips")
    best = fit(job, cfg.optim, out, dev, configs, resume=resume, progress=progress, max_steps=max_steps,
               clock=clock, dist=dist)
    ckpt = load_checkpoint(out) if dist.main else None
    if ckpt is not None:  # the test split, once, on the model chosen by validation
        ckpt.metrics.update(held_out_metrics(ckpt.build_model().to(dev), data, dev, cfg.optim.seed, splits=("test",)))
        ckpt.provenance["train_seconds"] = round(time.time() - started, 1)
        save_checkpoint(ckpt, out)
        tqdm.write(f"best epoch {best['best_epoch']}: val acc {ckpt.metrics['val_acc']:.4f}, test acc "
                   f"{ckpt.metrics['test_acc']:.4f} -> {out}")
    dist.barrier()
    return Result(out, best["best_epoch"], (ckpt or load_checkpoint(out)).metrics)


@torch.no_grad()
def evaluate(model: KeywordBiLSTM, data: SpeechCommands, split: SplitSet, device: torch.device,
             batch_size: int = 256, seed: int = 0) -> tuple[float, float, np.ndarray]:
    """(mean loss, accuracy, predictions) on a split; silence draws fixed by ``seed``."""
    model.eval()
    losses, preds = [], []
    rng = np.random.default_rng([seed, 7])
    for wave, y in data.batches(split, batch_size, rng):
        logits = model(wave.to(device)).float()
        losses.append(F.cross_entropy(logits, y.to(device), reduction="sum").item())
        preds.append(logits.argmax(1).cpu().numpy())
    pred = np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
    n = max(1, len(split))
    return sum(losses) / n, float((pred == split.labels).mean()) if len(pred) else 0.0, pred


def held_out_metrics(model: KeywordBiLSTM, data: SpeechCommands, device: torch.device, seed: int,
                     splits: tuple[str, ...] = ("validation", "test")) -> dict[str, float]:
    """``{key}_loss`` and ``{key}_acc`` on each of ``splits`` (key: val or test), and on
    both splits ``{key}_unknown_recall``: the share of out-of-vocabulary clips -> _unknown_."""
    out = {}
    for name, key in (("validation", "val"), ("test", "test")):
        if name in splits:
            out[f"{key}_loss"], out[f"{key}_acc"], _ = evaluate(model, data, data.split(name), device, seed=seed)
        oov = data.unknown_set(name)  # open set: every OOV clip -> _unknown_?
        if len(oov):
            out[f"{key}_unknown_recall"] = evaluate(model, data, oov, device, seed=seed)[1]
    return out


def _start_from(net: KeywordBiLSTM, path: str | os.PathLike, features: FeatureConfig, model_cfg: ModelConfig,
                labels: list[str]) -> None:
    init_features, init_model, init_labels, weights = load_initial(path)
    if (init_features, init_model) != (features, model_cfg):
        raise ConfigError(f"{path}: made with other feature/model settings ({init_features}, {init_model}); "
                          "train with the same ones")
    if init_labels is not None and init_labels != labels:  # another task's classifier (e.g. of many words)
        tqdm.write(f"{path}: a classifier of {len(init_labels)} other labels; starting from its front end, "
                   "convolution and BiLSTM")
        weights, init_labels = encoder_weights(weights), None
    net.load_state_dict(weights, strict=init_labels is not None)


def _read_speech(cfg: TrainConfig, talk_dir, mine_with, features: FeatureConfig, dev: torch.device,
                 progress: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The read speech of the read-speech rows, and the mined false alarms in it."""
    if talk_dir is None and cfg.windows.talk_ratio > 0:
        raise ConfigError("train.windows.talk_ratio > 0 needs read speech: pass talk_dir (--talk DIR)")
    talk = load_talk(talk_dir, features.sample_rate, progress=progress) if talk_dir is not None else None
    if cfg.mining.share <= 0:
        return talk, None
    if talk is None or mine_with is None:
        raise ConfigError("train.mining.share > 0 needs read speech (--talk DIR) and a model to mine "
                          "its false alarms with (--mine-with CKPT)")
    miner = Recognizer.from_checkpoint(mine_with, device=str(dev), runtime="eager")
    hard = mine_false_alarms(miner, talk, min_score=cfg.mining.min_score, progress=progress)
    tqdm.write(f"mined {len(hard)} false-alarm windows of {len(talk) / features.sample_rate / 3600:.2f} h "
               f"of read speech with {mine_with}")
    return talk, hard


def _resolved(path: str | os.PathLike | None) -> str | None:
    return str(Path(path).resolve()) if path is not None else None


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _save(out: Path, model: KeywordBiLSTM, data: SpeechCommands, features: FeatureConfig,
          model_cfg: ModelConfig, cfg: TrainConfig, sources: dict[str, Any], dev: torch.device,
          metrics: dict[str, Any], started: float) -> None:
    provenance = {
        **sources,
        "split_source": data.index.split_source,
        "split_sizes": data.split_sizes(),
        "skipped_clips": len(data.skipped),
        "seed": cfg.optim.seed,
        "epochs": cfg.optim.epochs,
        "synthetic_clips": sum(c.synthetic for c in data.index.clips),
        "commit": _git_commit(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": str(torch.__version__),
        "device": str(dev),
        "parameters": count_parameters(model),
        "train_seconds": round(time.time() - started, 1),
    }
    save_checkpoint(Checkpoint(features, model_cfg, to_dict(cfg), data.labels, model.state_dict(), metrics,
                               provenance), out)
