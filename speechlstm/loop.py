"""The training loop shared by the classifier (``train.py``) and the phonetic
encoder (``pretrain.py``): AdamW + warmup/cosine, mixed precision on CUDA,
gradient clipping, best-on-validation selection (or the last epoch), early stopping, a metrics CSV and a state file that ``resume``
continues from bit for bit. Under ``torchrun`` the same loop runs data-parallel
(DDP): each process trains on its shard of every epoch, gradients are averaged,
and rank 0 alone writes files.

What is trained is a ``Job``: it owns the batch source, the forward pass with its
loss terms, validation and what a saved file holds; the loop owns the rest."""

from __future__ import annotations

import atexit
import contextlib
import csv
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import atomic_torch_save, safe_load
from .errors import CheckpointError, ConfigError
from .model import resolve_device


@dataclass(frozen=True)
class OptimConfig:
    """``train.optim`` / ``pretrain.optim``: the loop's own settings."""

    epochs: int = 60
    batch_size: int = 64  # per process under torchrun (the global batch is this times the processes)
    lr: float = 3e-3
    weight_decay: float = 1e-2
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    patience: int = 60  # early stopping: epochs without validation improvement (60: the full schedule)
    seed: int = 0
    keep: str = "best"  # the saved epoch: "best" on validation, or "last" (a fixed schedule, e.g. chosen by
    # cross-validation, for a run whose validation clips are trained on: train.sampling.dev_all)

    def __post_init__(self) -> None:
        if self.keep not in ("best", "last"):
            raise ConfigError(f"keep must be 'best' or 'last', got {self.keep!r}")
        if self.epochs <= 0 or self.batch_size <= 0 or self.lr <= 0 or self.patience <= 0:
            raise ConfigError("epochs, batch_size, lr and patience must be positive")
        if self.warmup_epochs < 0 or not 0 <= self.label_smoothing < 1:
            raise ConfigError("need warmup_epochs >= 0 and 0 <= label_smoothing < 1")


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def device(self, dev: torch.device) -> torch.device:
        """One GPU per process: cuda -> cuda:LOCAL_RANK."""
        return torch.device("cuda", self.local_rank) if dev.type == "cuda" and self.world_size > 1 else dev


def distributed(device: torch.device | None = None) -> Distributed:
    """Join the ``torchrun`` process group named by the environment (once; NCCL on CUDA,
    gloo on the CPU), or a single process when ``WORLD_SIZE`` is unset or 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not torch.distributed.is_initialized():
        cuda = device is not None and device.type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
        atexit.register(torch.distributed.destroy_process_group)
    return Distributed(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                       int(os.environ.get("LOCAL_RANK", "0")))


def place(device: str = "auto") -> tuple[Distributed, torch.device]:
    """This process's rank in its ``torchrun`` job (joined with the backend ``device`` needs)
    and the device it trains on (``auto`` resolved; one GPU a process)."""
    dev = resolve_device(device)
    dist = distributed(dev)
    return dist, dist.device(dev)


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


@dataclass
class Step:
    """What a job's training step hands the loop. ``autocast``: the mixed-precision
    context for the forward pass; ``mark``: the profiling hook (``StageClock.mark``)."""

    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager]
    mark: Callable[[str], None]


class Job(Protocol):
    model: nn.Module  # the network that is validated and saved
    forward: nn.Module  # the training forward pass over it (what DDP wraps); same parameters
    score: str  # the validation metric that chooses the best epoch (higher is better)
    unused_parameters: bool  # parameters of ``model`` the forward pass leaves out (DDP must be told)

    def steps_per_epoch(self, dist: Distributed) -> int: ...

    def batches(self, epoch: int, rng: np.random.Generator, dist: Distributed) -> Iterator[Any]: ...

    def step(self, net: nn.Module, batch: Any, gen: torch.Generator, rng: np.random.Generator,
             ctx: Step) -> tuple[torch.Tensor, int, int]: ...  # (loss, correct, counted)

    def validate(self, model: nn.Module) -> dict[str, float]: ...

    def save(self, model: nn.Module, metrics: dict[str, Any]) -> None: ...


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``warmup`` steps, then cosine decay to 0 at step ``total``."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))


def state_path(out: Path) -> Path:
    return out.with_name(out.stem + ".train-state.pt")


def metrics_path(out: Path) -> Path:
    return out.with_name(out.stem + ".metrics.csv")


def fit(job: Job, cfg: OptimConfig, out: Path, device: torch.device, configs: dict[str, Any], *,
        resume: bool = False, progress: bool = True, max_steps: int | None = None,
        clock: StageClock | None = None, dist: Distributed = Distributed(), label: str = "epoch") -> dict:
    """Train ``job`` for ``cfg.epochs``; ``job.save`` gets each new best. ``configs``: what
    the run was asked (a resumed run must be asked the same). Returns the best row."""
    steps = min(job.steps_per_epoch(dist), max_steps or math.inf)
    opt = torch.optim.AdamW(job.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, max(1, int(cfg.warmup_epochs * steps)), cfg.epochs * steps)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    net = (nn.parallel.DistributedDataParallel(job.forward, device_ids=[device.index] if device.type == "cuda"
           else None, find_unused_parameters=job.unused_parameters) if dist.world_size > 1 else job.forward)
    ctx = Step(device, lambda: torch.autocast(device.type, torch.float16, enabled=device.type == "cuda"),
               clock.mark if clock else lambda stage: None)
    st = {"epoch": 0, "best": None, "best_epoch": -1, "bad_epochs": 0}
    if resume and state_path(out).is_file():
        st = _restore(out, configs, job.model, opt, sched, scaler)
        tqdm.write(f"resuming after {label} {st['epoch']} (best {job.score} {st['best'][job.score]:.4f} "
                   f"at {st['best_epoch']})")
    elif metrics_path(out).exists() and dist.main:
        metrics_path(out).unlink()
    for epoch in range(st["epoch"], cfg.epochs):
        if st["bad_epochs"] >= cfg.patience:
            break
        # Every epoch's randomness derives from (seed, epoch) (and the rank): resume replays it exactly.
        torch.manual_seed(cfg.seed * 100_003 + epoch + 7919 * dist.rank)
        rng = np.random.default_rng([cfg.seed, epoch])
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch + 7919 * dist.rank)
        job.forward.train()
        t0, seen, correct, loss_sum = time.time(), 0, 0, 0.0
        bar = tqdm(job.batches(epoch, rng, dist), total=steps, desc=f"{label} {epoch + 1}/{cfg.epochs}",
                   leave=False, disable=not progress or not dist.main)
        if clock:
            clock.restart()
        for i, batch in enumerate(bar):
            if i >= steps:
                break
            ctx.mark("load batch")
            loss, right, n = job.step(net, batch, gen, rng, ctx)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            ctx.mark("backward")
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(job.model.parameters(), 5.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            seen, correct, loss_sum = seen + n, correct + right, loss_sum + loss.item() * n
            ctx.mark("optimizer step")
            if clock:
                clock.steps, clock.clips = clock.steps + 1, clock.clips + n
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        row = {"epoch": epoch + 1, "train_loss": round(loss_sum / max(1, seen), 5),
               "train_acc": round(correct / max(1, seen), 5), **job.validate(job.model),
               "lr": f"{sched.get_last_lr()[0]:.3g}", "seconds": round(time.time() - t0, 2)}
        improved = st["best"] is None or row[job.score] > st["best"][job.score] or cfg.keep == "last"
        st.update(epoch=epoch + 1, best=row if improved else st["best"],
                  best_epoch=epoch + 1 if improved else st["best_epoch"],
                  bad_epochs=0 if improved else st["bad_epochs"] + 1)
        if dist.main:
            _append_csv(metrics_path(out), row)
            if improved:
                job.save(job.model, {**row, "best_epoch": epoch + 1})
            _save_state(out, configs, st, job.model, opt, sched, scaler)
            tqdm.write(f"{label} {epoch + 1:3d}  " + "  ".join(
                f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "lr", "seconds")) +
                f"{'  *' if improved else ''}  ({row['seconds']:.1f}s)")
    if dist.world_size > 1:
        _check_in_sync(job.model)
    return {**st["best"], "best_epoch": st["best_epoch"]}


def _save_state(out: Path, configs: dict, st: dict, model: nn.Module, opt, sched, scaler) -> None:
    atomic_torch_save({"configs": configs, **st, "model_state": model.state_dict(), "optimizer": opt.state_dict(),
                       "scheduler": sched.state_dict(), "scaler": scaler.state_dict()}, state_path(out))


def _restore(out: Path, configs: dict, model: nn.Module, opt, sched, scaler) -> dict:
    st = safe_load(state_path(out))
    if _but_epochs(st.get("configs")) != _but_epochs(configs):  # more epochs may be asked
        raise CheckpointError(f"{state_path(out)}: saved configs differ from this run's; "
                              "resume with the same settings")
    model.load_state_dict(st["model_state"])
    opt.load_state_dict(st["optimizer"])
    sched.load_state_dict(st["scheduler"])
    scaler.load_state_dict(st["scaler"])
    _truncate_csv(metrics_path(out), st["epoch"])
    return {k: st[k] for k in ("epoch", "best", "best_epoch", "bad_epochs")}


def _but_epochs(configs: Any) -> Any:
    """``configs`` without the number of epochs of any ``optim`` section."""
    if not isinstance(configs, dict):
        return configs
    return {k: ({n: v for n, v in x.items() if n != "epochs"} if k == "optim" and isinstance(x, dict)
                else _but_epochs(x)) for k, x in configs.items()}


def _check_in_sync(model: nn.Module) -> None:
    """Data-parallel ranks must end with the same weights; a rank that drifted is a bug, not a result."""
    total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1).cpu()
    every = [torch.zeros_like(total) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(every, total)
    if any(not torch.equal(t, total) for t in every):
        raise RuntimeError(f"data-parallel ranks ended with different weights: {[t.item() for t in every]}")


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})


def _truncate_csv(path: Path, last_epoch: int) -> None:
    """Drop the rows of an epoch cut short by a crash."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= last_epoch]
    path.unlink()
    for r in rows:
        _append_csv(path, r)
