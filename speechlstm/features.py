"""MFCC front end as an nn.Module: raw waveforms in, normalised frames out.
It lives inside the model, so a checkpoint carries its own features."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from .config import FeatureConfig

_LOG_OFFSET = 1e-6  # what torchaudio.transforms.MFCC adds before the log when log_mels=True


class MFCC(nn.Module):
    """(batch, samples) float waveform at cfg.sample_rate -> (batch, frames, n_mfcc).

    Two ways to the same numbers, both from torchaudio's own window, filterbank and
    DCT buffers: ``torch.stft`` (eager PyTorch: pocketfft is fast there), and, after
    ``use_graph_fft()``, a two-stage FFT written as matrix products (what export
    uses: ONNX Runtime's STFT/DFT kernels cost about 1 ms a clip, the matmuls a third).
    """

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
        self.matmul_fft: MatmulMelSpectrum | None = None  # set by use_graph_fft()

    @property
    def graph_fft(self) -> bool:
        return self.matmul_fft is not None

    def use_graph_fft(self, on: bool = True) -> "MFCC":
        """Compute the spectrum with matrix products (for export) or torch.stft (default)."""
        fb = self.mfcc.MelSpectrogram.mel_scale.fb
        self.matmul_fft = MatmulMelSpectrum(self.mfcc.MelSpectrogram).to(fb.device) if on else None
        return self

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        # Features in float32 even under autocast: STFT and log in fp16 lose too much.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            x = self._mfcc_ct(wave.float())  # (B, n_mfcc, T): time contiguous
            if self.cfg.norm == "cmvn":
                # mean and (unbiased) std over time, spelt out: torch.std_mean is 10x slower on CPU here
                x = x - x.mean(dim=-1, keepdim=True)
                std = (x.square().sum(dim=-1, keepdim=True) / max(1, x.shape[-1] - 1)).sqrt()
                x = x / std.clamp_min(1.0)  # floor: silence stays small
            elif self.cfg.norm == "cmn":
                x = x - x.mean(dim=-1, keepdim=True)
        # A (B, T, n_mfcc) view: the model's convolution reads (B, n_mfcc, T) back without a copy.
        return x.transpose(1, 2)

    def _mfcc(self, wave: torch.Tensor) -> torch.Tensor:
        """torchaudio's MFCC (same window, filterbank, log offset and DCT: its own
        buffers) -> (B, T, n_mfcc), before normalisation."""
        return self._mfcc_ct(wave).transpose(1, 2)

    def _mfcc_ct(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, S) -> (B, n_mfcc, T). Mel energies from torch.stft, or from the
        matrix-product FFT after ``use_graph_fft()``."""
        if self.matmul_fft is not None:
            mel = self.matmul_fft(wave).transpose(1, 2)  # (B, n_mels, T)
        else:
            mel = self._stft_mel(wave)
        return torch.matmul(self.mfcc.dct_mat.T, torch.log(mel + _LOG_OFFSET))  # (B, n_mfcc, T)

    def _stft_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, S) -> mel energies (B, n_mels, T), |X|^2 from the real and imaginary
        parts (not a complex abs() then pow(2))."""
        mel_spec = self.mfcc.MelSpectrogram
        stft = mel_spec.spectrogram
        pad = stft.n_fft // 2
        if stft.center and stft.pad_mode == "reflect" and wave.shape[-1] > pad:
            wave, center = reflect_pad(wave, pad), False
        else:
            center = stft.center
        spec = torch.stft(wave, n_fft=stft.n_fft, hop_length=stft.hop_length, win_length=stft.win_length,
                          window=stft.window, center=center, pad_mode=stft.pad_mode,
                          normalized=False, onesided=True, return_complex=True)  # (B, F, T)
        power = spec.real.square() + spec.imag.square()  # (B, F, T)
        return torch.matmul(mel_spec.mel_scale.fb.T, power)  # (B, n_mels, T)


def reflect_pad(wave: torch.Tensor, pad: int) -> torch.Tensor:
    """(B, S) -> (B, S + 2 pad): torch.stft's reflect centring (mirrored ends without the
    edge sample), as one concat: 5x faster than reflection_pad1d in eager PyTorch."""
    return torch.cat([wave[:, 1 : pad + 1].flip(-1), wave, wave[:, -pad - 1 : -1].flip(-1)], dim=-1)


class MatmulMelSpectrum(nn.Module):
    """Mel energies of torchaudio's centred, windowed power STFT, computed as a
    two-stage (Cooley-Tukey) FFT in matrix products, slices and one concat:
    operations every ONNX runtime runs fast, unlike its STFT kernel.

    With n = N2*n1 + n2 and k = k1 + N1*k2 (n_fft = N1*N2, hop a multiple of N2):
    stage A is an N1-point DFT over n1 for every n2 (one matrix product each for
    the real and imaginary parts); stage B, for each k1, an N2-point DFT over n2
    with the twiddles folded into its matrix. Real input: stage A forms only
    k1 = j <= N1/2, and stage B turns each j into both k1 = j and k1 = N1 - j
    (the conjugate), side by side in one matrix. The power spectrum meets the
    mel filterbank (rows reordered to match) in a last product. Only the bins
    that the filterbank uses are formed. Everything is built from the torchaudio
    module's own window and filterbank: no second copy of a feature parameter.
    """

    def __init__(self, mel_spec: torchaudio.transforms.MelSpectrogram):
        super().__init__()
        stft = mel_spec.spectrogram
        if not stft.center or stft.pad_mode != "reflect" or stft.power != 2.0:
            raise ValueError("MatmulMelSpectrum covers centred, reflect-padded power spectra")
        n_fft, hop = stft.n_fft, stft.hop_length
        win = stft.window.double()
        left = (n_fft - len(win)) // 2  # torch.stft centres a shorter window inside n_fft
        window = F.pad(win, (left, n_fft - len(win) - left))  # (n_fft,)
        fb = mel_spec.mel_scale.fb.double()  # (n_fft/2 + 1, n_mels)
        k_end = int((fb.abs().sum(1) > 0).nonzero().max()) + 1  # bins past this carry no mel weight

        # N2: the power of two dividing hop and n_fft closest to sqrt(n_fft) from below
        n2 = 1
        while hop % (2 * n2) == 0 and n_fft % (2 * n2) == 0 and (2 * n2) ** 2 <= n_fft:
            n2 *= 2
        n1 = n_fft // n2
        self.n_fft, self.hop, self.n2 = n_fft, hop, n2
        self.rows_per_hop = hop // n2
        rows = (window.view(n1, n2).abs().sum(1) > 0).nonzero().squeeze(1)
        self.r0, self.r1 = int(rows.min()), int(rows.max()) + 1  # rows of the frame under the window
        h = n1 // 2 + 1  # stage A outputs j = 0 .. N1/2
        k2n = -(-k_end // n1)  # k2 = 0 .. K2-1 covers every bin the filterbank uses

        i1 = torch.arange(self.r0, self.r1, dtype=torch.float64)
        ang = 2 * math.pi * torch.arange(h, dtype=torch.float64)[:, None] * i1[None, :] / n1  # (h, rows)
        i2 = torch.arange(n2, dtype=torch.float64)[:, None]
        k2 = torch.arange(k2n)
        # stage B for output k1 from input j (sign -1: the conjugate of j's output)
        def stage_b(k1: int, sign: float) -> tuple[torch.Tensor, torch.Tensor]:
            a = -2 * math.pi * i2 * (k1 + n1 * k2[None, :].double()) / n_fft  # (N2, K2)
            c, s = torch.cos(a), torch.sin(a)
            # (zr + i sign zi)(c + i s): rows for zr, rows for zi; columns [re, im]
            return torch.cat([c, s], 1), torch.cat([-sign * s, sign * c], 1)

        b_re, b_im, mel_rows = [], [], []
        zeros = torch.zeros(n2, 2 * k2n, dtype=torch.float64)
        for j in range(h):
            pair = n1 - j if 0 < j < n1 - j else None  # the conjugate partner, if it is another bin
            re_lo, im_lo = stage_b(j, 1.0)
            re_hi, im_hi = stage_b(pair, -1.0) if pair is not None else (zeros, zeros)
            # output columns: [real parts of k1 = j, of its partner | imaginary parts of both]
            b_re.append(torch.cat([re_lo[:, :k2n], re_hi[:, :k2n], re_lo[:, k2n:], re_hi[:, k2n:]], 1))
            b_im.append(torch.cat([im_lo[:, :k2n], im_hi[:, :k2n], im_lo[:, k2n:], im_hi[:, k2n:]], 1))
            rows_fb = []
            for k1 in (j, pair):
                part = torch.zeros(k2n, fb.shape[1], dtype=torch.float64)
                if k1 is not None:
                    bins = k1 + n1 * k2
                    part[bins < k_end] = fb[bins[bins < k_end]]
                rows_fb.append(part)
            mel_rows.append(torch.cat(rows_fb, 0))  # (2 K2, n_mels)
        for name, value in (("stage_a_re", torch.cos(ang)), ("stage_a_im", -torch.sin(ang)),
                            ("window", window.view(n1, n2)[self.r0 : self.r1, None, None, :]),
                            ("stage_b_re", torch.stack(b_re)), ("stage_b_im", torch.stack(b_im)),
                            ("fb", torch.stack(mel_rows))):
            self.register_buffer(name, value.float(), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        B, S = wave.shape
        T = 1 + S // self.hop
        pad = self.n_fft // 2
        x = reflect_pad(wave, pad)  # (B, S + n_fft)
        hops = -(-(S + self.n_fft) // self.hop) + 1
        x = F.pad(x, (0, hops * self.hop - S - self.n_fft))
        x = x.view(B, hops, self.rows_per_hop, self.n2).permute(2, 0, 1, 3)  # (rows/hop, B, hops, N2)
        # frame t, row n1 = rows_per_hop * j + i  is  x[i, :, t + j]: slices and one concat, no gather
        reach = -(-self.r1 // self.rows_per_hop)
        frames = torch.cat([x[:, :, j : j + T] for j in range(reach)], 0)[self.r0 : self.r1]  # (rows, B, T, N2)
        frames = (frames * self.window).reshape(self.r1 - self.r0, -1)  # (rows, B*T*N2)
        h = self.stage_a_re.shape[0]
        y_re = torch.matmul(self.stage_a_re, frames).view(h, B * T, self.n2)  # (h, BT, N2)
        y_im = torch.matmul(self.stage_a_im, frames).view(h, B * T, self.n2)
        z = torch.matmul(y_re, self.stage_b_re) + torch.matmul(y_im, self.stage_b_im)  # (h, BT, [re | im] 2 K2)
        re, im = z.chunk(2, dim=-1)
        power = (re * re + im * im).transpose(0, 1).reshape(B * T, -1)  # (BT, h * 2 K2): one long product
        return torch.matmul(power, self.fb.reshape(power.shape[1], -1)).view(B, T, -1)  # (B, T, n_mels)
