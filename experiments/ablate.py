"""Ablations for the model card: each named setting trained with several seeds,
chosen on the validation list only. Every run is a plain `speechlstm train`.

    python experiments/ablate.py --data-dir ../shared/data/speech_commands_mini \
        --out runs/ablate --seeds 0 1 2 --jobs 2 [--only baseline speed] [--extra-data synth/]

Writes <out>/results.csv (one row per run) and prints mean +- sd per setting.
Reruns skip runs whose checkpoint already exists. The model card's reverb, EMA and pooled-synthetic
rows were measured and not kept: their settings left the package after commit 6ad52f6.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import torch

# The configuration the ablations started from (the first shipped model), spelled out so that
# the table keeps its meaning when the defaults move: every run gets BASE, then its own overrides.
BASE = ["model.conv_stride=2", "model.num_layers=2", "model.hidden_size=128", "train.augment.speed=0.0",
        "train.optim.patience=12", "train.optim.epochs=60", "train.sampling.unknown_ratio=0.1"]

FAST = ["model.conv_stride=4", "model.num_layers=1"]  # one BiLSTM layer over 26 steps
FAST_SPEED = FAST + ["train.augment.speed=0.1"]
FULL = ["train.optim.patience=60"]  # no early stopping: the cosine schedule runs to the end

# name -> --set overrides on top of BASE
ABLATIONS: dict[str, list[str]] = {
    "baseline": [],
    "stride3": ["model.conv_stride=3"],
    "stride4": ["model.conv_stride=4"],
    "hidden96": ["model.hidden_size=96"],
    "one_layer": ["model.num_layers=1"],
    "stride4_one_layer": FAST,
    "stride4_hidden64": ["model.conv_stride=4", "model.hidden_size=64"],
    "hop20": ["features.hop_ms=20", "features.win_ms=40", "model.conv_stride=1"],
    "no_conv": ["model.conv_channels=0"],
    "meanmax": ["model.pooling=\"meanmax\""],
    "speed10": ["train.augment.speed=0.1"],
    "s4l1_speed10": FAST_SPEED,
    "s4l1_unknown50": FAST + ["train.sampling.unknown_ratio=0.5"],
    "s4l1_synth25": FAST + ["train.sampling.synth_ratio=0.25"],
    "fs_speed20": FAST + ["train.augment.speed=0.2"],
    "fs_no_early_stop": FAST_SPEED + FULL,
    "fs_synth25": FAST_SPEED + FULL + ["train.sampling.synth_ratio=0.25"],
    "baseline_speed10": ["train.augment.speed=0.1"] + FULL,
    "mixup02": ["train.augment.mixup_alpha=0.2"],
    "unknown50": ["train.sampling.unknown_ratio=0.5"],
    "specaug_strong": ["train.augment.time_mask_frames=20", "train.augment.freq_mask_bins=8"],
    "no_specaug": ["train.augment.time_masks=0", "train.augment.freq_masks=0"],
    "long120": ["train.optim.epochs=120", "train.optim.patience=25"],
    "synth25": ["train.sampling.synth_ratio=0.25"],
    "synth50": ["train.sampling.synth_ratio=0.5"],
}
NEEDS_EXTRA_DATA = {n for n, sets in ABLATIONS.items() if any(s.startswith("train.sampling.synth_ratio") for s in sets)}


def run_one(name: str, seed: int, args: argparse.Namespace, threads: int) -> dict:
    out = Path(args.out) / name / f"seed{seed}.pt"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "speechlstm", "train", "--data-dir", args.data_dir, "--out", str(out),
               "--seed", str(seed), "--device", args.device, "--quiet"]
        for s in BASE + ABLATIONS[name] + (args.set or []):
            cmd += ["--set", s]
        for d in args.extra_data or []:
            cmd += ["--extra-data", d]
        if args.cache_dir:
            cmd += ["--cache-dir", args.cache_dir]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        t0 = time.time()
        with open(out.with_suffix(".log"), "w") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        if rc != 0:
            return {"setting": name, "seed": seed, "error": f"exit {rc}, see {out.with_suffix('.log')}"}
        print(f"{name} seed {seed}: {time.time() - t0:.0f} s", flush=True)
    ck = torch.load(out, map_location="cpu", weights_only=True)
    m, p = ck["metrics"], ck["provenance"]
    return {"setting": name, "seed": seed, "val_acc": m.get("val_acc"),
            "val_unknown_recall": m.get("val_unknown_recall"), "best_epoch": m.get("best_epoch"),
            "parameters": p.get("parameters"), "train_seconds": p.get("train_seconds"), "device": p.get("device")}


def summarize(rows: list[dict]) -> str:
    """Markdown table: mean +- sd over seeds per setting."""
    lines = ["| setting | overrides | seeds | val acc % | val OOV -> _unknown_ % | best epochs | train s (1 thread) |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["setting"] for r in rows):
        ok = [r for r in rows if r["setting"] == name and r.get("val_acc") is not None]
        if not ok:
            lines.append(f"| {name} | | failed | | | | |")
            continue

        def ms(key: str, scale: float = 100.0, digits: int = 2) -> str:
            v = [scale * r[key] for r in ok if r.get(key) is not None]
            if not v:
                return "-"
            return f"{statistics.mean(v):.{digits}f} ± {statistics.stdev(v) if len(v) > 1 else 0:.{digits}f}"

        sets = " ".join(f"`{s}`" for s in ABLATIONS[name]) or "(BASE)"
        epochs = ", ".join(str(r["best_epoch"]) for r in ok)
        lines.append(f"| {name} | {sets} | {', '.join(str(r['seed']) for r in ok)} | {ms('val_acc')} | "
                     f"{ms('val_unknown_recall')} | {epochs} | {ms('train_seconds', 1.0, 0)} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", nargs="+", choices=sorted(ABLATIONS), help="settings to run (default: all)")
    p.add_argument("--set", action="append", help="extra override applied to every run")
    p.add_argument("--extra-data", action="append", help="passed to train (synthetic clips)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir")
    p.add_argument("--report", action="store_true", help="only tabulate the runs already in --out")
    args = p.parse_args()
    if args.report:
        names = args.only or list(ABLATIONS)
        done = [(n, s) for n in names for s in args.seeds if (Path(args.out) / n / f"seed{s}.pt").is_file()]
        print(summarize([run_one(n, s, args, 1) for n, s in done]))
        return
    names = args.only or [n for n in ABLATIONS if n not in NEEDS_EXTRA_DATA or args.extra_data]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    todo = [(n, s) for n in names for s in args.seeds]
    keys = ["setting", "seed", "val_acc", "val_unknown_recall", "best_epoch", "parameters", "train_seconds",
            "device", "error"]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    rows = []
    with ThreadPoolExecutor(args.jobs) as pool, open(Path(args.out) / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for done in as_completed([pool.submit(run_one, n, s, args, threads) for n, s in todo]):
            rows.append(done.result())
            w.writerow(rows[-1])
            f.flush()  # partial results survive an interrupted sweep
    order = {job: i for i, job in enumerate(todo)}
    print(summarize(sorted(rows, key=lambda r: order[(r["setting"], r["seed"])])))


if __name__ == "__main__":
    main()
