"""MFCC front end as an nn.Module: raw waveforms in, normalised frames out.
It lives inside the model, so a checkpoint carries its own features."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import FeatureConfig
from .pins import pair_problem, versions_line

try:
    import torchaudio
except OSError as e:  # its compiled library, built for another torch release, does not load
    raise ImportError(f"torchaudio cannot load ({versions_line()}): "
                      f"{pair_problem() or str(e).splitlines()[0]}") from e

_LOG_OFFSET = 1e-6  # what torchaudio.transforms.MFCC adds before the log when log_mels=True


class MFCC(nn.Module):
    """(batch, samples) float waveform at cfg.sample_rate -> (batch, frames, n_mfcc).

    Two ways to the same numbers, both from torchaudio's own window, filterbank and
    DCT buffers: ``torch.stft`` (eager PyTorch: pocketfft is fast there), and, after
    ``use_graph_fft()``, a two-stage FFT written as matrix products (what export
    uses: ONNX Runtime's STFT/DFT kernels cost about 1 ms a clip, the matmuls a third).
    Both take the same optional noise floor before the log (``cfg.dynamic_range_db``).
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
        floor = None
        if cfg.dynamic_range_db is not None:
            white = self.mfcc.MelSpectrogram.mel_scale.fb.double().sum(0)  # white noise's energy per band
            floor = (white / white.sum() * 10.0 ** (-cfg.dynamic_range_db / 10))[:, None].float()
        self.register_buffer("floor_shape", floor, persistent=False)  # (n_mels, 1) or None

    def _log(self, mel: torch.Tensor, bands: int) -> torch.Tensor:
        """log(mel + floor + 1e-6), ``bands`` the mel axis (1: (B, n_mels, T); 0: (n_mels, B, T)).
        The floor: ``floor_shape`` scaled by each clip's loudest frame (its total mel energy)."""
        if self.floor_shape is None:
            return torch.log(mel + _LOG_OFFSET)
        loudest = mel.sum(bands, keepdim=True).amax(-1, keepdim=True)  # (B, 1, 1) or (1, B, 1)
        shape = self.floor_shape if bands == 1 else self.floor_shape[:, :, None]  # (n_mels, 1[, 1])
        return torch.log(mel + (loudest * shape + _LOG_OFFSET))

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
        dct = self.mfcc.dct_mat.T  # (n_mfcc, n_mels)
        if self.matmul_fft is not None:
            mel = self.matmul_fft(wave)  # (n_mels, B, T)
            x = torch.matmul(dct, self._log(mel, bands=0).flatten(1))  # (n_mfcc, B*T)
            return x.view(-1, *mel.shape[1:]).transpose(0, 1)  # (B, n_mfcc, T)
        return torch.matmul(dct, self._log(self._stft_mel(wave), bands=1))  # (B, n_mfcc, T)

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


def reflect_pad(wave: torch.Tensor, pad: int, right: int | None = None) -> torch.Tensor:
    """(B, S) -> (B, pad + S + right): torch.stft's reflect centring (mirrored ends without
    the edge sample; ``right`` defaults to ``pad``), as one concat: 5x faster than
    reflection_pad1d in eager PyTorch."""
    S = wave.shape[-1]
    right = pad if right is None else right
    return torch.cat([wave[:, 1 : pad + 1].flip(-1), wave, wave[:, S - 1 - right : S - 1].flip(-1)], dim=-1)


class MatmulMelSpectrum(nn.Module):
    """Mel energies of torchaudio's centred, windowed power STFT, computed as a
    two-stage (Cooley-Tukey) FFT in matrix products, slices and one concat:
    operations every ONNX runtime runs fast, unlike its STFT kernel.

    With n = N2*n1 + n2 and k = k1 + N1*k2 (n_fft = N1*N2, hop a multiple of N2),
    a frame is ``rows`` rows of N2 samples. Stage A, for every column n2, is an
    N1-point DFT down the rows, the window folded into its matrix (one matrix per
    column: a batched product over n2). Stage B, for each k1, is an N2-point DFT
    along a row with the twiddles folded in. Real input: stage A forms only
    k1 = j <= N1/2, and stage B turns each j into both k1 = j and k1 = N1 - j (the
    conjugate), side by side in one matrix. The power spectrum meets the mel
    filterbank (rows reordered to match) in a last product. Only the bins that the
    filterbank uses are formed. Every tensor keeps frames (B*T) as its last, contiguous
    axis, so that the graph's transposes move whole rows of frames, never single
    floats (ONNX Runtime's Transpose is 15x slower when the innermost axis moves).
    Everything is built from the torchaudio module's own window and filterbank:
    no second copy of a feature parameter.
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
        self.h = h = n1 // 2 + 1  # stage A outputs j = 0 .. N1/2
        k2n = -(-k_end // n1)  # k2 = 0 .. K2-1 covers every bin the filterbank uses

        i1 = torch.arange(self.r0, self.r1, dtype=torch.float64)
        ang = 2 * math.pi * torch.arange(h, dtype=torch.float64)[:, None] * i1[None, :] / n1  # (h, rows)
        stage_a = torch.cat([torch.cos(ang), -torch.sin(ang)])  # (2h, rows): [re j | im j]
        win_rows = window.view(n1, n2)[self.r0 : self.r1]  # (rows, N2)
        i2 = torch.arange(n2, dtype=torch.float64)[:, None]
        k2 = torch.arange(k2n)
        # stage B for output k1 from input j (sign -1: the conjugate of j's output)
        def stage_b(k1: int, sign: float) -> tuple[torch.Tensor, torch.Tensor]:
            a = -2 * math.pi * i2 * (k1 + n1 * k2[None, :].double()) / n_fft  # (N2, K2)
            c, s = torch.cos(a), torch.sin(a)
            # (zr + i sign zi)(c + i s): rows for zr, rows for zi; columns [re, im]
            return torch.cat([c, s], 1), torch.cat([-sign * s, sign * c], 1)

        b_mats, mel_rows = [], []
        zeros = torch.zeros(n2, 2 * k2n, dtype=torch.float64)
        for j in range(h):
            pair = n1 - j if 0 < j < n1 - j else None  # the conjugate partner, if it is another bin
            re_lo, im_lo = stage_b(j, 1.0)
            re_hi, im_hi = stage_b(pair, -1.0) if pair is not None else (zeros, zeros)
            # rows: [re of j over n2 | im of j over n2]; columns: [real parts of k1 = j, of its
            # partner | imaginary parts of both]
            b_re = torch.cat([re_lo[:, :k2n], re_hi[:, :k2n], re_lo[:, k2n:], re_hi[:, k2n:]], 1)
            b_im = torch.cat([im_lo[:, :k2n], im_hi[:, :k2n], im_lo[:, k2n:], im_hi[:, k2n:]], 1)
            b_mats.append(torch.cat([b_re, b_im]).T)  # (4 K2, 2 N2)
            rows_fb = []
            for k1 in (j, pair):
                part = torch.zeros(k2n, fb.shape[1], dtype=torch.float64)
                if k1 is not None:
                    bins = k1 + n1 * k2
                    part[bins < k_end] = fb[bins[bins < k_end]]
                rows_fb.append(part)
            mel_rows.append(torch.cat(rows_fb, 0))  # (2 K2, n_mels)
        for name, value in (("stage_a", stage_a[None] * win_rows.T[:, None, :]),  # (N2, 2h, rows)
                            ("stage_b", torch.stack(b_mats)),  # (h, 4 K2, 2 N2)
                            ("fb", torch.cat(mel_rows).T)):  # (n_mels, h * 2 K2)
            self.register_buffer(name, value.float().contiguous(), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, S) -> mel energies (n_mels, B, T)."""
        B, S = wave.shape
        T = 1 + S // self.hop
        n2, rph, h = self.n2, self.rows_per_hop, self.h
        reach = -(-self.r1 // rph)  # hops a frame spans
        hops = T + reach - 1
        pad = self.n_fft // 2
        right = hops * self.hop - pad - S  # samples the last hop needs past the end
        x = reflect_pad(wave, pad, min(max(right, 0), pad))
        if right > pad:  # rows past the window's last: read, never used
            x = F.pad(x, (0, right - pad))
        elif right < 0:
            x = x[:, : hops * self.hop]
        x = x.view(B, hops, self.hop).permute(2, 0, 1)  # (hop, B, hops)
        x = x.reshape(rph, n2, B, hops).transpose(0, 1)  # (N2, rows/hop, B, hops)
        # frame t, row n1 = rph * j + i  is  x[:, i, :, t + j]: slices and one concat, no gather
        parts = [x[:, max(self.r0 - j * rph, 0) : min(self.r1 - j * rph, rph), :, j : j + T]
                 for j in range(reach) if self.r0 - j * rph < rph and self.r1 - j * rph > 0]
        frames = torch.cat(parts, 1).reshape(n2, self.r1 - self.r0, B * T)  # (N2, rows, BT)
        y = torch.matmul(self.stage_a, frames)  # (N2, [re | im] 2h, BT)
        y = y.view(n2, 2, h, B * T).permute(2, 1, 0, 3).reshape(h, 2 * n2, B * T)  # (h, [re | im] N2, BT)
        z = torch.matmul(self.stage_b, y)  # (h, [re | im] 2 K2, BT)
        z = z * z
        power = z.view(h, 2, -1, B * T).sum(1).reshape(-1, B * T)  # (h * 2 K2, BT): re^2 + im^2
        return torch.matmul(self.fb, power).view(-1, B, T)  # (n_mels, B, T)
