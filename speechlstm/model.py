"""Bidirectional LSTM keyword classifier over MFCC frames."""

from __future__ import annotations

import torch
from torch import nn

from .config import FeatureConfig, ModelConfig
from .errors import ConfigError
from .features import MFCC


class AttentionPool(nn.Module):
    """Learned softmax weights over time: (B, T, D) -> (B, D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim // 2), nn.Tanh(), nn.Linear(dim // 2, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.score(h), dim=1)  # (B, T, 1)
        return torch.matmul(w.transpose(1, 2), h).squeeze(1)  # (B, 1, T) @ (B, T, D) -> (B, D)


class MeanMaxPool(nn.Module):
    """Mean and max over time, concatenated: (B, T, D) -> (B, 2D)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([h.mean(dim=1), h.amax(dim=1)], dim=-1)


class KeywordBiLSTM(nn.Module):
    """waveform (B, S) at 16 kHz -> logits (B, n_classes). MFCC included."""

    def __init__(self, features: FeatureConfig, model: ModelConfig, n_classes: int):
        super().__init__()
        self.feature_cfg, self.model_cfg = features, model
        self.frontend = MFCC(features)
        lstm_in = features.n_mfcc
        if model.conv_channels:
            self.conv = nn.Sequential(
                nn.Conv1d(features.n_mfcc, model.conv_channels, kernel_size=5,
                          stride=model.conv_stride, padding=2),
                nn.BatchNorm1d(model.conv_channels),
                nn.GELU(),
            )
            lstm_in = model.conv_channels
        else:
            self.conv = None
        self.lstm = nn.LSTM(
            lstm_in, model.hidden_size, num_layers=model.num_layers, batch_first=True,
            bidirectional=True, dropout=model.dropout if model.num_layers > 1 else 0.0,
        )
        self.pool = AttentionPool(2 * model.hidden_size) if model.pooling == "attention" else MeanMaxPool()
        self.dropout = nn.Dropout(model.dropout)
        self.head = nn.Linear(model.pooled_size, n_classes)

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        return self.frontend(wave)  # (B, S) -> (B, T, n_mfcc)

    def encode(self, feats: torch.Tensor) -> torch.Tensor:
        """The encoder (convolution + BiLSTM) that phonetic pretraining trains:
        (B, T, n_mfcc) -> (B, T', 2H), one step every ``conv_stride`` frames."""
        x = feats  # (B, T, n_mfcc)
        if self.conv is not None:
            x = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T', C)
        h, _ = self.lstm(x)  # (B, T', 2H)
        return h

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        h = self.encode(feats)  # (B, T', 2H)
        pooled = self.pool(h)  # (B, 2H) or (B, 4H)
        return self.head(self.dropout(pooled))  # (B, n_classes)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(wave))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" -> CUDA when torch sees a GPU, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA device")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {device!r}: {e}") from None
