"""matplotlib pictures (Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, labels: list[str], path: str | Path) -> None:
    """Counts (left) and row-normalised recall (right)."""
    plt = _pyplot()
    n = len(labels)
    size = max(6.0, 0.45 * n + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size), constrained_layout=True)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    for ax, mat, title, fmt in ((axes[0], cm, "counts", "d"), (axes[1], norm, "row-normalised", ".2f")):
        im = ax.imshow(mat, cmap="Blues", vmin=0)
        ax.set_title(f"confusion matrix ({title})")
        ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if n <= 40:
            top = mat.max() if mat.size else 0
            for i in range(n):
                for j in range(n):
                    if mat[i, j]:
                        ax.text(j, i, format(mat[i, j], fmt), ha="center", va="center", fontsize=6,
                                color="white" if mat[i, j] > 0.6 * top else "black")
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(bins: list[dict], ece: float, path: str | Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), constrained_layout=True)
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    if bins:
        mids = [(b["low"] + b["high"]) / 2 for b in bins]
        width = bins[0]["high"] - bins[0]["low"]
        ax.bar(mids, [b["accuracy"] for b in bins], width=width * 0.9, alpha=0.7, label="accuracy")
        ax.plot(mids, [b["confidence"] for b in bins], "o", color="C1", label="mean confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability diagram (ECE {ece:.3f})")
    ax.legend(loc="upper left")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def clip_figure(samples: np.ndarray, sample_rate: int, start: int, length: int, mfcc: np.ndarray,
                label: str):
    """Waveform with the deciding window shaded, and that window's MFCC frames. A plain
    Figure (no pyplot state: safe in a server's threads) with a fixed layout, which
    renders in half the time of a constrained one."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    top, bottom = fig.subplots(2, 1)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.97, bottom=0.1, hspace=0.35)
    t, lo, hi = envelope(samples, sample_rate)
    top.fill_between(t, lo, hi, linewidth=0.6)
    top.axvspan(start / sample_rate, (start + length) / sample_rate, color="C1", alpha=0.2,
                label=f"window -> {label}")
    top.set_xlim(0, max(len(samples), length) / sample_rate)
    top.set_ylim(-1, 1)
    top.set_xlabel("time (s)")
    top.legend(loc="upper right")
    bottom.imshow(mfcc.T, origin="lower", aspect="auto", cmap="magma",
                  extent=(start / sample_rate, (start + length) / sample_rate, 0, mfcc.shape[1]))
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("MFCC (normalised)")
    return fig


def envelope(samples: np.ndarray, sample_rate: int, points: int = 2000):
    """(times, min, max) over at most ``points`` bins: hours of audio plot as fast as a second."""
    n = len(samples)
    bins = max(1, min(points, n))
    edges = np.linspace(0, n, bins + 1).astype(int)
    lo = np.minimum.reduceat(samples, edges[:-1]) if n else np.zeros(1)
    hi = np.maximum.reduceat(samples, edges[:-1]) if n else np.zeros(1)
    return edges[:-1] / sample_rate, lo, hi


def plot_stream_sweep(rows: list[dict], path: str | Path) -> None:
    """Streaming trade-off over thresholds: correct / missed / wrong per threshold
    (left) and missed commands against false alarms per hour (right), the curve
    wake-word benchmarks publish. Rows as ``stream_eval.sweep`` returns them."""
    from .stream_eval import CORRECT, FALSE_ALARMS, MISSED, SPEECH_FALSE_ALARMS, WRONG

    plt = _pyplot()
    grid = [r for r in rows if r["threshold"] != "calibrated"]
    cal = [r for r in rows if r["threshold"] == "calibrated"]
    t = [float(r["threshold"]) for r in grid]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for key, name, style in ((CORRECT, "correct", "o-"), (MISSED, "missed", "s-"),
                             (WRONG, "wrong", "^-")):
        a.plot(t, [r[key] for r in grid], style, ms=4, label=name)
    a.set_xlabel("threshold (every command)")
    a.set_ylabel("% of spoken commands")
    a.set_title("detections per threshold")
    a.grid(alpha=0.3)
    a.legend()
    for key, name in ((FALSE_ALARMS, "between commands"),
                      (SPEECH_FALSE_ALARMS, "on continuous speech")):
        if all(key in r for r in grid):
            b.plot([r[key] for r in grid], [r[MISSED] + r[WRONG] for r in grid], "o-", ms=4,
                   label=f"false alarms {name}")
            for r in cal:
                b.plot([r[key]], [r[MISSED] + r[WRONG]], "k*", ms=12)
    if cal:
        b.plot([], [], "k*", ms=10, label="calibrated per-command thresholds")
    b.set_xscale("symlog", linthresh=1.0)
    b.set_xlabel("false alarms per hour")
    b.set_ylabel("% of commands missed or wrong")
    b.set_title("trade-off (lower left is better)")
    b.grid(alpha=0.3, which="both")
    b.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
