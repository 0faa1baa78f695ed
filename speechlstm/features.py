"""MFCC front end as an nn.Module: raw waveforms in, normalised frames out.
It lives inside the model, so a checkpoint carries its own features."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from .config import FeatureConfig


class MFCC(nn.Module):
    """(batch, samples) float waveform at cfg.sample_rate -> (batch, frames, n_mfcc)."""

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        self.cfg = cfg
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=cfg.sample_rate,
            n_mfcc=cfg.n_mfcc,
            dct_type=2,
            norm="ortho",
            log_mels=True,
            melkwargs=dict(
                n_fft=cfg.n_fft,
                win_length=cfg.win_samples,
                hop_length=cfg.hop_samples,
                f_min=cfg.f_min,
                f_max=cfg.f_max,
                n_mels=cfg.n_mels,
                center=True,
                power=2.0,
                mel_scale="htk",
            ),
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        # Features in float32 even under autocast: STFT and log in fp16 lose too much.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            x = self.mfcc(wave.float())  # (B, n_mfcc, T)
            x = x.transpose(1, 2)  # (B, T, n_mfcc)
            if self.cfg.norm != "none":
                x = x - x.mean(dim=1, keepdim=True)
            if self.cfg.norm == "cmvn":
                x = x / x.std(dim=1, keepdim=True).clamp_min(1.0)  # floor: silence stays small
        return x
