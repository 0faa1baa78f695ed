"""Offline evaluation through the shipped Recognizer: three data layouts,
accuracy with a confidence interval, per-class P/R/F1, confusion matrix,
calibration, latency, unreadable clips; report.json / report.md / PNGs."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .audio import wav_files
from .data import SpeechCommandsIndex
from .labels import SILENCE, UNKNOWN
from .errors import AudioError, DataError
from .infer import Recognizer

SPLIT_LISTS = {"test": "testing_list.txt", "validation": "validation_list.txt"}


@dataclass
class Items:
    layout: str  # "dataset", "canonical" or "manifest"
    paths: list[Path]
    labels: list[str]  # as the data names them (before mapping to the model's vocabulary)


def find_items(data: str | os.PathLike, split: str = "test") -> Items:
    """Recognise the layout of ``data`` and list its clips with their labels."""
    data = Path(data)
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise DataError(f"{data}: a file must be a CSV manifest (path,label)")
        return _manifest(data)
    if not data.is_dir():
        raise DataError(f"{data}: no such file or directory")
    if (data / SILENCE).is_dir() or (data / UNKNOWN).is_dir():
        paths, labels = [], []
        for d in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for f in wav_files(d):
                paths.append(f)
                labels.append(d.name)
        return Items("canonical", paths, labels)
    if split not in SPLIT_LISTS:
        raise DataError(f"--split must be one of {', '.join(SPLIT_LISTS)}")
    index = SpeechCommandsIndex.scan(data)
    clips = [c for c in index.clips if c.split == split]
    return Items("dataset", [data / c.rel for c in clips], [c.word for c in clips])


def _manifest(path: Path) -> Items:
    paths, labels = [], []
    with path.open(newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row or (i == 0 and [c.strip().lower() for c in row[:2]] == ["path", "label"]):
                continue
            if len(row) < 2:
                raise DataError(f"{path}:{i + 1}: expected 'path,label'")
            p = Path(row[0].strip())
            paths.append(p if p.is_absolute() else path.parent / p)
            labels.append(row[1].strip())
    return Items("manifest", paths, labels)


def to_vocabulary(label: str, labels: list[str]) -> str:
    """Words outside the model's vocabulary are _unknown_, as the 12-class task defines."""
    return label if label in labels or UNKNOWN not in labels else UNKNOWN


# --------------------------------------------------------------------------- metrics


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return (0.0, 0.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)


def per_class(cm: np.ndarray, labels: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for i, name in enumerate(labels):
        tp, support, predicted = cm[i, i], cm[i].sum(), cm[:, i].sum()
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out[name] = {"precision": round(float(p), 4), "recall": round(float(r), 4),
                     "f1": round(float(f1), 4), "support": int(support)}
    return out


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> dict:
    """Expected calibration error and the reliability table (equal-width bins)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if not m.any():
            continue
        acc, conf = float(correct[m].mean()), float(confidence[m].mean())
        ece += m.mean() * abs(acc - conf)
        table.append({"low": round(edges[b], 4), "high": round(edges[b + 1], 4), "count": int(m.sum()),
                      "accuracy": round(acc, 4), "confidence": round(conf, 4)})
    return {"ece": round(float(ece), 4), "bins": table}


def top_confusions(cm: np.ndarray, labels: list[str], k: int = 10) -> list[dict]:
    off = [(int(cm[i, j]), labels[i], labels[j]) for i in range(len(labels)) for j in range(len(labels))
           if i != j and cm[i, j] > 0]
    return [{"true": t, "predicted": p, "count": c} for c, t, p in sorted(off, key=lambda x: -x[0])[:k]]


# --------------------------------------------------------------------------- run


@dataclass
class Report:
    data: dict
    cm: np.ndarray
    labels: list[str]
    reliability: list[dict] = field(default_factory=list)


def evaluate(recognizer: Recognizer, items: Items, batch_size: int = 128, progress: bool = True,
             latency_clips: int = 50) -> Report:
    labels = recognizer.labels
    truth_names = [to_vocabulary(lab, labels) for lab in items.labels]
    unknown_truth = sorted({n for n in truth_names if n not in labels})
    if unknown_truth:
        raise DataError(f"labels {unknown_truth} are not in the model's vocabulary and it has no {UNKNOWN}")
    y_true, y_pred, conf, unreadable = [], [], [], []
    t0 = time.perf_counter()
    with tqdm(total=len(items.paths), desc="evaluating", unit="clip", disable=not progress) as bar:
        for start in range(0, len(items.paths), batch_size):
            clips, truth = [], []
            for path, name in zip(items.paths[start : start + batch_size], truth_names[start : start + batch_size]):
                try:
                    clips.append(recognizer.prepare(path)[0])
                    truth.append(labels.index(name))
                except AudioError as e:
                    unreadable.append({"path": str(path), "error": str(e)})
            if clips:
                probs = recognizer.probabilities(np.stack(clips))
                y_pred += list(probs.argmax(1))
                conf += list(probs.max(1))
                y_true += truth
            bar.update(min(batch_size, len(items.paths) - start))
    elapsed = time.perf_counter() - t0
    y_true, y_pred, conf = np.array(y_true, int), np.array(y_pred, int), np.array(conf, float)
    n, correct = len(y_true), int((y_true == y_pred).sum())
    cm = confusion_matrix(y_true, y_pred, len(labels))
    calib = calibration(conf, y_true == y_pred) if n else {"ece": 0.0, "bins": []}
    data = {
        "layout": items.layout,
        "clips": len(items.paths),
        "evaluated": n,
        "accuracy": round(correct / n, 4) if n else 0.0,
        "accuracy_ci95": [round(x, 4) for x in wilson_interval(correct, n)],
        "correct": correct,
        "per_class": per_class(cm, labels),
        "top_confusions": top_confusions(cm, labels),
        "ece": calib["ece"],
        "latency_ms": {"batched_per_clip": round(1000 * elapsed / max(1, len(items.paths)), 3),
                       **_single_clip_latency(recognizer, items, latency_clips)},
        "unreadable": unreadable,
        "labels": labels,
        "device": str(recognizer.device),
        "backend": recognizer.backend,
    }
    if UNKNOWN in labels and (y_true == labels.index(UNKNOWN)).any():
        # open set: speech outside the vocabulary that comes out _unknown_ (= the class's recall)
        data["oov_to_unknown"] = data["per_class"][UNKNOWN]["recall"]
    return Report(data, cm, labels, calib["bins"])


def _single_clip_latency(recognizer: Recognizer, items: Items, n: int) -> dict:
    """Median and p95 of read + window + model for one clip at a time."""
    times = []
    for path in items.paths[:n]:
        t = time.perf_counter()
        try:
            recognizer.predict_file(path)
        except AudioError:
            continue
        times.append(1000 * (time.perf_counter() - t))
    if not times:
        return {}
    return {"single_clip_median": round(float(np.median(times)), 3),
            "single_clip_p95": round(float(np.percentile(times, 95)), 3)}


def write_report(report: Report, out: str | os.PathLike, title: str = "speechlstm evaluation") -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report.data, indent=2) + "\n")
    with (out / "confusion.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true\\predicted", *report.labels])
        for name, row in zip(report.labels, report.cm):
            w.writerow([name, *map(int, row)])
    from .plots import plot_confusion, plot_reliability

    plot_confusion(report.cm, report.labels, out / "confusion.png")
    plot_reliability(report.reliability, report.data["ece"], out / "reliability.png")
    (out / "report.md").write_text(markdown(report, title))
    return out


def markdown(report: Report, title: str = "speechlstm evaluation") -> str:
    d = report.data
    lo, hi = d["accuracy_ci95"]
    lines = [f"# {title}", "",
             f"- layout: {d['layout']}; clips: {d['clips']}; evaluated: {d['evaluated']}; "
             f"unreadable: {len(d['unreadable'])}",
             f"- **accuracy: {100 * d['accuracy']:.2f}%** (95% CI {100 * lo:.1f}-{100 * hi:.1f}%)",
             f"- expected calibration error: {d['ece']:.4f}",
             *([f"- out-of-vocabulary speech -> `_unknown_`: {100 * d['oov_to_unknown']:.1f}%"]
               if "oov_to_unknown" in d else []),
             f"- model: {d['backend']} on {d['device']}; latency per clip: {d['latency_ms']}", "", table(d), ""]
    if d["top_confusions"]:
        lines += ["Top confusions:", ""] + [f"- {c['true']} -> {c['predicted']}: {c['count']}"
                                              for c in d["top_confusions"]] + [""]
    if d["unreadable"]:
        lines += ["Unreadable clips:", ""] + [f"- {u['path']}: {u['error']}" for u in d["unreadable"]] + [""]
    lines += ["![confusion matrix](confusion.png)", "", "![reliability](reliability.png)", ""]
    return "\n".join(lines)


def table(d: dict) -> str:
    rows = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name, m in d["per_class"].items():
        rows.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    return "\n".join(rows)
