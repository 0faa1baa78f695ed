"""Training-time augmentation on batches, on whatever device the model is on.
Every random number comes from the ``torch.Generator`` passed in (CPU), so a
run is reproducible from its seed on any device."""

from __future__ import annotations

import numpy as np
import torch

from .config import FeatureConfig, TrainConfig


def _uniform(gen: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (high - low) + low


class Augmenter:
    """Waveform augmentation (shift, gain, background noise at a random SNR)
    and SpecAugment-style masking of MFCC frames."""

    def __init__(self, cfg: TrainConfig, features: FeatureConfig, noise: list[np.ndarray],
                 device: torch.device | str = "cpu"):
        self.cfg, self.device = cfg, torch.device(device)
        self.shift = int(features.sample_rate * cfg.shift_ms / 1000)
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
        # time shift with zero fill
        shift = torch.randint(-self.shift, self.shift + 1, (B,), generator=gen)
        shift[keep] = 0
        idx = torch.arange(S).unsqueeze(0) - shift.unsqueeze(1)  # (B, S)
        valid = ((idx >= 0) & (idx < S)).to(self.device)
        x = x.gather(1, idx.clamp(0, S - 1).to(self.device)) * valid
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
            noise = self.bank[(start.unsqueeze(1) + torch.arange(S)).to(self.device)]  # (B, S)
            speech_rms = x.pow(2).mean(1).sqrt()
            noise_rms = noise.pow(2).mean(1).sqrt().clamp_min(1e-5)
            scale = speech_rms / (noise_rms * 10.0 ** (snr_db.to(self.device) / 20.0))
            x = x + noise * (scale * use.to(self.device)).unsqueeze(1)
        return x.clamp(-1.0, 1.0)

    def spec(self, f: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """f: (B, T, C) normalised features -> same shape with time/frequency bands zeroed."""
        B, T, C = f.shape
        mask = torch.zeros(B, T, C, dtype=torch.bool)
        for n, width, axis, size in ((self.cfg.time_masks, self.cfg.time_mask_frames, 1, T),
                                     (self.cfg.freq_masks, self.cfg.freq_mask_bins, 2, C)):
            if n <= 0 or width <= 0:
                continue
            w = torch.randint(0, width + 1, (B, n), generator=gen)
            s = (torch.rand(B, n, generator=gen) * (size - w + 1)).long()
            pos = torch.arange(size).view(1, 1, size)
            band = ((pos >= s.unsqueeze(-1)) & (pos < (s + w).unsqueeze(-1))).any(1)  # (B, size)
            mask |= band.unsqueeze(3 - axis)  # broadcast over the other axis
        return f.masked_fill(mask.to(f.device), 0.0)
