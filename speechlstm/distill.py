"""Distillation: the student also learns the mean softened posteriors of trained
teachers on the same augmented batch. The loss becomes ``(1 - weight)`` times the
task's loss plus ``weight * T^2 * KL(teachers' mean at temperature T || student's)``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .checkpoint import load_checkpoint
from .config import FeatureConfig
from .errors import ConfigError
from .model import KeywordBiLSTM


@dataclass(frozen=True)
class DistillConfig:
    """``train.distill`` (with ``teachers``): 0 weight, no distillation."""

    weight: float = 0.0
    temperature: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.weight <= 1 or self.temperature <= 0:
            raise ConfigError("need 0 <= distill weight <= 1 and temperature > 0")


def load_teachers(paths: tuple[str | os.PathLike, ...], labels: list[str], features: FeatureConfig,
                  device: torch.device) -> list[KeywordBiLSTM]:
    """Frozen teacher networks; each must share the student's labels and front end."""
    nets = []
    for path in paths:
        t = load_checkpoint(path)
        if t.labels != labels or t.features != features:
            raise ConfigError(f"{path}: a teacher needs the same labels and feature settings as the model trained")
        net = t.build_model().to(device)
        for p in net.parameters():
            p.requires_grad_(False)
        nets.append(net)
    return nets


class Distillation:
    """A loss term: ``(loss, logits, feats) -> loss`` mixed with the teachers' (feats:
    the features the student heard; the teachers share its front end)."""

    def __init__(self, cfg: DistillConfig, teachers: list[KeywordBiLSTM]):
        if cfg.weight > 0 and not teachers:
            raise ConfigError("train.distill.weight > 0 needs teachers")
        self.cfg, self.teachers = cfg, teachers

    @property
    def active(self) -> bool:
        return bool(self.teachers) and self.cfg.weight > 0

    def __call__(self, loss: torch.Tensor, logits: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        T, w = self.cfg.temperature, self.cfg.weight
        with torch.no_grad():
            target = torch.stack([torch.softmax(t.classify(feats).float() / T, -1) for t in self.teachers]).mean(0)
        kl = F.kl_div(F.log_softmax(logits.float() / T, -1), target, reduction="batchmean") * T**2
        return (1 - w) * loss + w * kl
