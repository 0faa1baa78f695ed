"""MFCC front end as an nn.Module: raw waveforms in, normalised frames out.
It lives inside the model, so a checkpoint carries its own features."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from .config import FeatureConfig

_LOG_OFFSET = 1e-6  # what torchaudio.transforms.MFCC adds before the log when log_mels=True


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
            x = self._mfcc(wave.float())  # (B, T, n_mfcc)
            if self.cfg.norm == "cmvn":
                std, mean = torch.std_mean(x, dim=1, keepdim=True)
                x = (x - mean) / std.clamp_min(1.0)  # floor: silence stays small
            elif self.cfg.norm == "cmn":
                x = x - x.mean(dim=1, keepdim=True)
        return x

    def _mfcc(self, wave: torch.Tensor) -> torch.Tensor:
        """torchaudio's MFCC (same window, filterbank, log offset and DCT: its own
        buffers), computed time-major and with |X|^2 from real and imaginary parts
        instead of a complex abs() then pow(2): the same numbers, several times faster in batches."""
        mel_spec = self.mfcc.MelSpectrogram
        stft = mel_spec.spectrogram
        spec = torch.stft(wave, n_fft=stft.n_fft, hop_length=stft.hop_length, win_length=stft.win_length,
                          window=stft.window, center=stft.center, pad_mode=stft.pad_mode,
                          normalized=False, onesided=True, return_complex=True)  # (B, F, T)
        power = spec.real.square() + spec.imag.square()  # (B, F, T), frequency-contiguous
        mel = torch.matmul(power.transpose(1, 2), mel_spec.mel_scale.fb)  # (B, T, n_mels)
        return torch.matmul(torch.log(mel + _LOG_OFFSET), self.mfcc.dct_mat)  # (B, T, n_mfcc)
