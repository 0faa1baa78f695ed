"""The training loop: AdamW + warmup/cosine, label smoothing, augmentation,
best-on-validation selection, early stopping, resumable from a state file."""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .augment import Augmenter
from .checkpoint import Checkpoint, atomic_torch_save, load_checkpoint, load_initial, safe_load, save_checkpoint
from .config import FeatureConfig, ModelConfig, TrainConfig, to_dict
from .data import SpeechCommands, SplitSet
from .labels import SILENCE
from .errors import CheckpointError, ConfigError
from .infer import Recognizer
from .mining import mine_false_alarms
from .model import KeywordBiLSTM, count_parameters, resolve_device
from .windows import StreamWindows, load_talk


def state_path(out: Path) -> Path:
    return out.with_name(out.stem + ".train-state.pt")


def metrics_path(out: Path) -> Path:
    return out.with_name(out.stem + ".metrics.csv")


class StageClock:
    """Wall time per stage of the training step, for profiling an epoch: ``mark(stage)``
    books the time since the previous mark to ``stage`` (synchronising CUDA first,
    so GPU work lands in the stage that queued it)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seconds: dict[str, float] = {}
        self.steps = self.clips = 0
        self._last = time.perf_counter()

    def mark(self, stage: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now

    def restart(self) -> None:
        """Forget the time since the last mark (set-up, evaluation between epochs)."""
        self._last = time.perf_counter()


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``warmup`` steps, then cosine decay to 0 at step ``total``."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))


@dataclass
class Result:
    checkpoint: Path
    best_epoch: int
    metrics: dict[str, float]


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


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def train(data_dir: str | os.PathLike, out: str | os.PathLike, cfg: TrainConfig = TrainConfig(),
          features: FeatureConfig = FeatureConfig(), model_cfg: ModelConfig = ModelConfig(), *,
          device: str = "auto", resume: bool = False, cache_dir: str | os.PathLike | None = None,
          progress: bool = True, max_steps: int | None = None,
          extra_data: tuple[str | os.PathLike, ...] = (), more_data: tuple[str | os.PathLike, ...] = (),
          talk_dir: str | os.PathLike | None = None,
          init_from: str | os.PathLike | None = None, teachers: tuple[str | os.PathLike, ...] = (),
          mine_with: str | os.PathLike | None = None, clock: StageClock | None = None) -> Result:
    """Train a model and write the best-on-validation checkpoint to ``out``.

    Beside it: ``<out>.metrics.csv`` (one row per epoch) and
    ``<out>.train-state.pt`` (what --resume continues from). ``max_steps``
    caps optimizer steps per epoch (smoke tests). ``extra_data``: directories of
    extra training clips in ``word/*.wav`` form (e.g. `speechlstm synth` output),
    mixed in at ``cfg.synth_ratio``; their non-command words join the unknown pool
    (``cfg.synth_unknowns``) or come at ``cfg.extra_unknown_ratio``. ``more_data``: more
    clips of the dataset itself (Speech Commands recordings from elsewhere) that join
    its training split as they are (minus the testing split's speakers).
    ``talk_dir``: read speech in the LibriSpeech layout for the streaming-aware
    windows (``cfg.talk_ratio``, ``cfg.stream_context_prob``).
    ``init_from``: a pretrained encoder (``speechlstm pretrain``) whose front end,
    convolution and BiLSTM weights the model starts from, or a trained checkpoint with
    the same labels to fine-tune (same feature and model configs either way).
    ``teachers``: trained checkpoints with the same labels and features whose mean
    softened posteriors the model also learns (``cfg.distill_weight``, ``cfg.distill_temperature``).
    ``mine_with``: a trained checkpoint whose false alarms on the read speech become
    ``cfg.talk_hard_share`` of its rows (windows where it gives a command at least
    ``cfg.mine_min_score``; ``mining.py``).
    ``clock``: time each stage of every training step (``speechlstm bench --train``).
    """
    out, dev = Path(out), resolve_device(device)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data = SpeechCommands(data_dir, cfg.task, sample_rate=features.sample_rate,
                          clip_samples=features.clip_samples, cache_dir=cache_dir,
                          silence_ratio=cfg.silence_ratio, unknown_ratio=cfg.unknown_ratio,
                          seed=cfg.seed, progress=progress, extra_dirs=tuple(extra_data),
                          more_dirs=tuple(more_data),
                          synth_ratio=cfg.synth_ratio, synth_unknowns=cfg.synth_unknowns,
                          extra_unknown_ratio=cfg.extra_unknown_ratio)
    if data.skipped:
        tqdm.write(f"skipped {len(data.skipped)} unreadable clip(s), e.g. {data.skipped[0][0]}: "
                   f"{data.skipped[0][1]}")
    val = data.split("validation")
    torch.manual_seed(cfg.seed)
    model = KeywordBiLSTM(features, model_cfg, len(data.labels)).to(dev)
    if init_from is not None:
        init_features, init_model, init_labels, weights = load_initial(init_from)
        if (init_features, init_model) != (features, model_cfg):
            raise ConfigError(f"{init_from}: made with other feature/model settings "
                              f"({init_features}, {init_model}); train with the same ones")
        if init_labels is not None and init_labels != data.labels:
            raise ConfigError(f"{init_from}: its labels {init_labels} are not this task's {data.labels}")
        model.load_state_dict(weights, strict=init_labels is not None)
    teacher_nets = _teachers(teachers, data.labels, features, dev)
    if cfg.distill_weight > 0 and not teacher_nets:
        raise ConfigError("train.distill_weight > 0 needs teachers (--teacher CKPT)")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(data.split("train")) / cfg.batch_size)
    if max_steps:
        steps_per_epoch = min(steps_per_epoch, max_steps)
    total, warmup = cfg.epochs * steps_per_epoch, max(1, int(cfg.warmup_epochs * steps_per_epoch))
    sched = warmup_cosine(opt, warmup, total)
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    augment = Augmenter(cfg, features, data.noise, dev)
    if talk_dir is None and cfg.talk_ratio > 0:
        raise ConfigError("train.talk_ratio > 0 needs read speech: pass talk_dir (--talk DIR)")
    talk = load_talk(talk_dir, features.sample_rate, progress=progress) if talk_dir is not None else None
    hard = None
    miner = (Recognizer.from_checkpoint(mine_with, device=str(dev), runtime="eager")
             if mine_with is not None and cfg.talk_hard_share > 0 else None)
    if cfg.talk_hard_share > 0:
        if talk is None or miner is None:
            raise ConfigError("train.talk_hard_share > 0 needs read speech (--talk DIR) and a model to mine "
                              "its false alarms with (--mine-with CKPT)")
        hard = mine_false_alarms(miner, talk, min_score=cfg.mine_min_score, progress=progress)
        tqdm.write(f"mined {len(hard)} false-alarm windows of {len(talk) / features.sample_rate / 3600:.2f} h "
                   f"of read speech with {mine_with}")
    windows = (StreamWindows(cfg, data.labels, features.sample_rate, talk, hard) if cfg.task == "commands12"
               else None)
    windows = windows if windows is not None and windows.active else None
    ema = (torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        if cfg.ema_decay > 0 else None)
    judged = ema.module if ema is not None else model  # what validation sees and what is saved
    silence = data.labels.index(SILENCE) if SILENCE in data.labels else -1

    start_epoch, best_acc, best_epoch, bad_epochs = 0, -1.0, -1, 0
    sources = {"data_dir": _resolved(data_dir), "talk_dir": _resolved(talk_dir),  # every input, for the provenance
               "extra_data": [_resolved(d) for d in extra_data], "more_data": [_resolved(d) for d in more_data],
               "init_from": _resolved(init_from), "teachers": [_resolved(t) for t in teachers],
               "mine_with": _resolved(mine_with)}
    configs = {"features": to_dict(features), "model": to_dict(model_cfg), "train": to_dict(cfg)}
    if resume and state_path(out).is_file():
        st = safe_load(state_path(out))
        saved = {k: st.get(k) for k in configs}
        saved["train"] = {**(saved["train"] or {}), "epochs": cfg.epochs}  # more epochs may be asked
        if saved != configs:
            raise CheckpointError(f"{state_path(out)}: saved configs differ from this run's; "
                                  "resume with the same settings")
        model.load_state_dict(st["model_state"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        scaler.load_state_dict(st["scaler"])
        if ema is not None:
            ema.load_state_dict(st["ema"])
        start_epoch, best_acc, best_epoch, bad_epochs = (st["epoch"], st["best_acc"], st["best_epoch"],
                                                         st["bad_epochs"])
        _truncate_csv(metrics_path(out), start_epoch)  # rows of an epoch cut short by the crash
        tqdm.write(f"resuming after epoch {start_epoch} (best val acc {best_acc:.4f} at {best_epoch})")
    elif metrics_path(out).exists():
        metrics_path(out).unlink()

    tqdm.write(f"training {cfg.task} on {dev}: {count_parameters(model):,} parameters, "
               f"{len(data.split('train'))} train / {len(val)} validation clips")
    for epoch in range(start_epoch, cfg.epochs):
        if bad_epochs >= cfg.patience:
            break
        # Every epoch's randomness derives from (seed, epoch): resume replays it exactly.
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        rng = np.random.default_rng([cfg.seed, epoch])
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        train_set = data.split("train", rng)
        model.train()
        t0, seen, correct, loss_sum = time.time(), 0, 0, 0.0
        bar = tqdm(data.batches(train_set, cfg.batch_size, rng, shuffle=True), total=steps_per_epoch,
                   desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not progress)
        mark = clock.mark if clock is not None else (lambda stage: None)
        if clock is not None:
            clock.restart()
        for step, (wave, y) in enumerate(bar):
            if step >= steps_per_epoch:
                break
            mark("load batch")  # memory-mapped clip cache -> float batch (+ silence crops)
            weight = None
            if windows is not None:
                wave, y, weight = windows(wave, y, gen)
                weight = weight.to(dev)
                mark("streaming windows")
            wave, y = wave.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            wave = augment.wave(wave, gen, skip=(y == silence).cpu())
            lam, partner = 1.0, y
            if cfg.mixup_alpha > 0:  # mix each clip with another of the batch
                lam = float(rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
                perm = torch.randperm(len(y), generator=gen).to(dev)
                wave, partner = lam * wave + (1 - lam) * wave[perm], y[perm]
            mark("augment waveform")
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                feats = model.features(wave)  # (B, T, n_mfcc)
                mark("MFCC")
                feats = augment.spec(feats, gen)
                logits = model.classify(feats)  # (B, n_classes)
                loss = _loss(logits, y, weight, cfg.label_smoothing)
                if lam < 1.0:
                    loss = lam * loss + (1 - lam) * _loss(logits, partner, weight, cfg.label_smoothing)
                if teacher_nets and cfg.distill_weight > 0:
                    loss = (1 - cfg.distill_weight) * loss + cfg.distill_weight * _distill_loss(
                        logits, teacher_nets, feats, cfg.distill_temperature)
            mark("forward: SpecAugment, network, loss")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            mark("backward")
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            seen += len(y)
            correct += (logits.argmax(1) == y).sum().item()
            loss_sum += loss.item() * len(y)
            mark("optimizer step")
            if clock is not None:
                clock.steps, clock.clips = clock.steps + 1, clock.clips + len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        val_loss, val_acc, _ = evaluate(judged, data, val, dev, seed=cfg.seed)
        row = {"epoch": epoch + 1, "train_loss": round(loss_sum / max(1, seen), 5),
               "train_acc": round(correct / max(1, seen), 5), "val_loss": round(val_loss, 5),
               "val_acc": round(val_acc, 5), "lr": f"{sched.get_last_lr()[0]:.3g}",
               "seconds": round(time.time() - t0, 2)}
        _append_csv(metrics_path(out), row)
        improved = val_acc > best_acc
        if improved:
            best_acc, best_epoch, bad_epochs = val_acc, epoch + 1, 0
            _save(out, judged, data, features, model_cfg, cfg, sources, dev,
                  {"val_acc": val_acc, "val_loss": val_loss, "best_epoch": best_epoch}, started)
        else:
            bad_epochs += 1
        tqdm.write(f"epoch {epoch + 1:3d}  train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f}  "
                   f"val loss {val_loss:.3f} acc {val_acc:.4f}{'  *' if improved else ''}  "
                   f"({row['seconds']:.1f}s)")
        atomic_torch_save({**configs, "epoch": epoch + 1, "model_state": model.state_dict(),
                           "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                           "scaler": scaler.state_dict(), "best_acc": best_acc, "best_epoch": best_epoch,
                           "bad_epochs": bad_epochs, **({"ema": ema.state_dict()} if ema else {})},
                          state_path(out))

    # Report the test split once, on the model chosen by validation.
    best = load_checkpoint(out)
    net = best.build_model().to(dev)
    best.metrics.update(held_out_metrics(net, data, dev, cfg.seed, splits=("test",)))
    test_acc = best.metrics["test_acc"]
    best.provenance["train_seconds"] = round(time.time() - started, 1)
    save_checkpoint(best, out)
    tqdm.write(f"best epoch {best_epoch}: val acc {best.metrics['val_acc']:.4f}, test acc {test_acc:.4f} "
               f"-> {out}")
    return Result(out, best_epoch, best.metrics)


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


def _resolved(path: str | os.PathLike | None) -> str | None:
    return str(Path(path).resolve()) if path is not None else None


def _teachers(paths: tuple[str | os.PathLike, ...], labels: list[str], features: FeatureConfig,
              dev: torch.device) -> list[KeywordBiLSTM]:
    nets = []
    for path in paths:
        t = load_checkpoint(path)
        if t.labels != labels or t.features != features:
            raise ConfigError(f"{path}: a teacher needs the same labels and feature settings as the model trained")
        net = t.build_model().to(dev)
        for p in net.parameters():
            p.requires_grad_(False)
        nets.append(net)
    return nets


def _distill_loss(logits: torch.Tensor, teachers: list[KeywordBiLSTM], feats: torch.Tensor,
                  temperature: float) -> torch.Tensor:
    """T^2 * KL(mean teacher posteriors at temperature T || the student's), on the
    features the student saw (the teachers share its front end)."""
    with torch.no_grad():
        target = torch.stack([torch.softmax(t.classify(feats).float() / temperature, -1) for t in teachers]).mean(0)
    student = F.log_softmax(logits.float() / temperature, -1)
    return F.kl_div(student, target, reduction="batchmean") * temperature**2


def _loss(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None, smoothing: float) -> torch.Tensor:
    """Cross-entropy; with ``weight`` (B,), a weighted mean (0: a row left out)."""
    if weight is None:
        return F.cross_entropy(logits.float(), y, label_smoothing=smoothing)
    per_row = F.cross_entropy(logits.float(), y, label_smoothing=smoothing, reduction="none")
    return (per_row * weight).sum() / weight.sum().clamp_min(1.0)


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def _truncate_csv(path: Path, last_epoch: int) -> None:
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= last_epoch]
    path.unlink()
    for r in rows:
        _append_csv(path, r)


def _save(out: Path, model: KeywordBiLSTM, data: SpeechCommands, features: FeatureConfig,
          model_cfg: ModelConfig, cfg: TrainConfig, sources: dict[str, Any], dev: torch.device,
          metrics: dict[str, Any], started: float) -> None:
    provenance = {
        **sources,
        "split_source": data.index.split_source,
        "split_sizes": data.split_sizes(),
        "skipped_clips": len(data.skipped),
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "synthetic_clips": sum(c.synthetic for c in data.index.clips),
        "commit": _git_commit(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": str(torch.__version__),
        "device": str(dev),
        "parameters": count_parameters(model),
        "train_seconds": round(time.time() - started, 1),
    }
    save_checkpoint(Checkpoint(features, model_cfg, cfg, data.labels, model.state_dict(), metrics,
                               provenance), out)
