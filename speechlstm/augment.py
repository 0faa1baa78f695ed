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
    """Waveform augmentation (speed, simulated reverberation, shift, gain,
    background noise at a random SNR) and SpecAugment-style masking of MFCC frames."""

    def __init__(self, cfg: TrainConfig, features: FeatureConfig, noise: list[np.ndarray],
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
        if self.cfg.reverb_prob > 0:
            x = self._reverb(x, gen, keep)
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

    def _reverb(self, x: torch.Tensor, gen: torch.Generator, keep: torch.Tensor) -> torch.Tensor:
        """Convolve chosen rows with a synthetic room response: a direct path plus
        exponentially decaying noise with an RT60 drawn from ``reverb_rt60_s``;
        the output keeps the input's RMS."""
        B, S = x.shape
        use = (torch.rand(B, generator=gen) < self.cfg.reverb_prob) & ~keep
        if not use.any():
            return x
        rt60 = _uniform(gen, B, *self.cfg.reverb_rt60_s)
        L = int(self.sample_rate * self.cfg.reverb_rt60_s[1])
        t = torch.arange(L, dtype=torch.float32) / self.sample_rate
        decay = torch.exp(-6.9078 * t.unsqueeze(0) / rt60.unsqueeze(1))  # -60 dB at rt60
        rir = torch.randn(B, L, generator=gen) * decay
        rir[:, 0] = 1.0 / 0.3  # direct path dominates the onset
        rir = (rir / rir.norm(dim=1, keepdim=True)).to(self.device)
        n = 1 << (S + L - 1).bit_length()
        wet = torch.fft.irfft(torch.fft.rfft(x, n) * torch.fft.rfft(rir, n), n)[:, :S]
        rms = x.pow(2).mean(1, keepdim=True).sqrt()
        wet = wet * rms / wet.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-8)
        return torch.where(use.to(self.device).unsqueeze(1), wet, x)

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
