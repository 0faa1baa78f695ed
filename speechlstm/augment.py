"""Training-time augmentation on batches, on whatever device the model is on.
(Simulated rooms were measured and not kept: docs/research.md, "Ablations".)
Every random number comes from the ``torch.Generator`` passed in (CPU), so a
run is reproducible from its seed on any device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import FeatureConfig
from .errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation (``train.augment`` in a checkpoint or recipe)."""

    noise_prob: float = 0.8  # background noise at a random SNR
    snr_db: tuple[float, float] = (0.0, 20.0)
    shift_ms: float = 100.0
    gain_db: float = 6.0
    speed: float = 0.1  # speed perturbation: rate drawn from [1 - speed, 1 + speed] (tempo and pitch)
    mixup_alpha: float = 0.0  # >0: mixup of waveforms with Beta(alpha, alpha) weights
    time_masks: int = 2
    time_mask_frames: int = 10
    freq_masks: int = 2
    freq_mask_bins: int = 5

    def __post_init__(self) -> None:
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise ConfigError(f"snr_db must be (low, high), got {self.snr_db}")
        if not 0 <= self.speed < 0.5:
            raise ConfigError(f"speed must be in [0, 0.5), got {self.speed}")
        for name in ("noise_prob", "mixup_alpha", "shift_ms", "gain_db"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


def _uniform(gen: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (high - low) + low


class Augmenter:
    """Waveform augmentation (speed, shift, gain,
    background noise at a random SNR) and SpecAugment-style masking of MFCC frames."""

    def __init__(self, cfg: AugmentConfig, features: FeatureConfig, noise: list[np.ndarray],
                 device: torch.device | str = "cpu"):
        self.cfg, self.device = cfg, torch.device(device)
        self.shift = int(features.sample_rate * cfg.shift_ms / 1000)
        self.sample_rate = features.sample_rate
        length = features.clip_samples
        usable = [x for x in noise if len(x) >= length]
        self.bank = torch.from_numpy(np.concatenate(usable)).to(self.device) if usable else None
        lengths = torch.tensor([len(x) for x in usable], dtype=torch.long)
        self.offsets = torch.cumsum(lengths, 0) - lengths
        self.spans = lengths - length + 1  # valid start positions per file

    def wave(self, x: torch.Tensor, gen: torch.Generator,
             skip: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, S) -> (B, S). ``skip`` (B,) bool marks rows left alone (silence)."""
        B, S = x.shape
        keep = torch.zeros(B, dtype=torch.bool) if skip is None else skip.cpu()
        if self.cfg.speed > 0:
            x = self._speed(x, gen, keep)
        # time shift with zero fill
        shift = torch.randint(-self.shift, self.shift + 1, (B,), generator=gen)
        shift[keep] = 0
        idx = self._arange(S).unsqueeze(0) - shift.to(self.device).unsqueeze(1)  # (B, S)
        x = x.gather(1, idx.clamp(0, S - 1)) * ((idx >= 0) & (idx < S))
        # random gain
        gain_db = _uniform(gen, B, -self.cfg.gain_db, self.cfg.gain_db)
        gain_db[keep] = 0.0
        x = x * (10.0 ** (gain_db / 20.0)).to(self.device).unsqueeze(1)
        # background noise at a random SNR
        if self.bank is not None and self.cfg.noise_prob > 0:
            use = (torch.rand(B, generator=gen) < self.cfg.noise_prob) & ~keep
            snr_db = _uniform(gen, B, *self.cfg.snr_db)
            f = torch.randint(len(self.spans), (B,), generator=gen)
            start = self.offsets[f] + (torch.rand(B, generator=gen) * self.spans[f]).long()
            noise = self.bank[start.to(self.device).unsqueeze(1) + self._arange(S)]  # (B, S)
            speech_rms = x.pow(2).mean(1).sqrt()
            noise_rms = noise.pow(2).mean(1).sqrt().clamp_min(1e-5)
            scale = speech_rms / (noise_rms * 10.0 ** (snr_db.to(self.device) / 20.0))
            x = x + noise * (scale * use.to(self.device)).unsqueeze(1)
        return x.clamp(-1.0, 1.0)

    def _arange(self, n: int) -> torch.Tensor:
        """0..n-1 on the model's device: the (B, S) index maps are built there, not copied over."""
        return torch.arange(n, device=self.device)

    def _speed(self, x: torch.Tensor, gen: torch.Generator, keep: torch.Tensor) -> torch.Tensor:
        """Resample each row about its centre by a rate in [1 - speed, 1 + speed]
        (linear interpolation; tempo and pitch change together, as in Kaldi's speed perturbation)."""
        B, S = x.shape
        rate = _uniform(gen, B, 1.0 - self.cfg.speed, 1.0 + self.cfg.speed)
        rate[keep] = 1.0
        centre = (S - 1) / 2
        pos = centre + (self._arange(S).float().unsqueeze(0) - centre) * rate.to(self.device).unsqueeze(1)  # (B, S)
        inside = (pos >= 0) & (pos <= S - 1)
        lo = pos.floor().clamp(0, S - 1).long()
        frac = (pos - lo).clamp(0, 1)
        hi = (lo + 1).clamp(max=S - 1)
        y = x.gather(1, lo) * (1 - frac) + x.gather(1, hi) * frac
        return y * inside

    def mixup(self, wave: torch.Tensor, y: torch.Tensor, rng: np.random.Generator,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Mix each clip with another of the batch: (mixed waves, the partners' labels, the
        weight lam of the clip's own label); lam = 1 (nothing mixed) with ``mixup_alpha`` 0."""
        if self.cfg.mixup_alpha <= 0:
            return wave, y, 1.0
        lam = float(rng.beta(self.cfg.mixup_alpha, self.cfg.mixup_alpha))
        perm = torch.randperm(len(y), generator=gen).to(wave.device)
        return lam * wave + (1 - lam) * wave[perm], y[perm], lam

    def spec(self, f: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """f: (B, T, C) normalised features -> same shape with time/frequency bands zeroed."""
        B, T, C = f.shape
        mask = torch.zeros(B, T, C, dtype=torch.bool, device=f.device)
        for n, width, axis, size in ((self.cfg.time_masks, self.cfg.time_mask_frames, 1, T),
                                     (self.cfg.freq_masks, self.cfg.freq_mask_bins, 2, C)):
            if n <= 0 or width <= 0:
                continue
            w = torch.randint(0, width + 1, (B, n), generator=gen)
            s = (torch.rand(B, n, generator=gen) * (size - w + 1)).long()
            s, e = s.to(f.device).unsqueeze(-1), (s + w).to(f.device).unsqueeze(-1)  # (B, n, 1)
            pos = torch.arange(size, device=f.device).view(1, 1, size)
            band = ((pos >= s) & (pos < e)).any(1)  # (B, size)
            mask |= band.unsqueeze(3 - axis)  # broadcast over the other axis
        return f.masked_fill(mask, 0.0)
