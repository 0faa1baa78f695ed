"""How far should the features reach under a clip's loudest frame? (features.dynamic_range_db)

A gated or muted input (browser noise suppression, a noise gate, PulseAudio's start-up) turns
the room noise before a word into digital silence, and the log mel energies of digital silence
sit far under any noise the model was trained on. For each model and each level this prints
one-clip accuracy on a split's clips as recorded, with everything up to 200 / 100 / 50 ms before
the word's onset zeroed, and 10 / 20 / 30 dB quieter. The model's weights are untouched: only
its feature config changes. With --write LEVEL OUT the first model is saved with that level, its
validation and test metrics measured again as training measures them (DATA: the dataset root).

    python experiments/dynamic_range.py DATA MODEL.pt ... [--split validation]
        [--levels none,40,45,50,55,60,70] [--write 50 OUT.pt]

DATA: a Speech Commands root (its validation or test list) or a canonical test folder.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from speechlstm.audio import pad_or_trim, read_audio, speech_bounds
from speechlstm.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from speechlstm.data import SpeechCommands
from speechlstm.evaluate import find_items, to_vocabulary
from speechlstm.infer import Recognizer
from speechlstm.train import TrainConfig, held_out_metrics


def conditions(clips: np.ndarray, rate: int) -> dict[str, np.ndarray]:
    starts, _ = speech_bounds(clips, hop=rate // 100)  # the word's onset: first 10 ms frame within 30 dB of the loudest

    def gated(ms: int) -> np.ndarray:
        out = clips.copy()
        for c, s in zip(out, starts):
            c[: max(0, s - ms * rate // 1000)] = 0.0
        return out

    out = {"as recorded": clips}
    out.update({f"gated {ms} ms before": gated(ms) for ms in (200, 100, 50)})
    out.update({f"{db} dB quieter": clips * np.float32(10 ** (-db / 20)) for db in (10, 20, 30)})
    return out


def with_level(base: Checkpoint, level: float | None) -> Checkpoint:
    return dataclasses.replace(base, features=dataclasses.replace(base.features, dynamic_range_db=level))


def remeasured(ck: Checkpoint, root: str) -> Checkpoint:
    """``ck`` with val/test accuracy and out-of-vocabulary recall measured as ``train`` does."""
    cfg = TrainConfig.from_dict(ck.train)
    data = SpeechCommands(root, cfg.task, sampling=cfg.sampling, sample_rate=ck.features.sample_rate,
                          clip_samples=ck.features.clip_samples, seed=cfg.optim.seed)
    with torch.inference_mode():
        metrics = {**ck.metrics, **held_out_metrics(ck.build_model(), data, torch.device("cpu"), cfg.optim.seed)}
    provenance = {**ck.provenance, "dynamic_range_db_added": "after training, by experiments/dynamic_range.py"}
    return dataclasses.replace(ck, metrics=metrics, provenance=provenance)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--split", default="validation", choices=("validation", "test"))
    ap.add_argument("--levels", default="none,40,45,50,55,60,70")
    ap.add_argument("--write", nargs=2, metavar=("LEVEL", "OUT"))
    args = ap.parse_args()
    torch.manual_seed(0)
    levels = [None if x == "none" else float(x) for x in args.levels.split(",")]

    first = load_checkpoint(args.models[0])
    rate, n = first.features.sample_rate, first.features.clip_samples
    items = find_items(args.data, args.split)
    clips = np.stack([pad_or_trim(read_audio(p, rate)[0], n) for p in items.paths])
    sets = conditions(clips, rate)
    print(f"{len(clips)} clips ({args.data}, {items.layout} layout, {args.split}); one-clip accuracy %\n")
    print("| model | dynamic_range_db | " + " | ".join(sets) + " |")
    print("|---|---|" + "---:|" * len(sets))
    for path in args.models:
        base = load_checkpoint(path)
        truth = [to_vocabulary(label, base.labels) for label in items.labels]
        for level in levels:
            rec = Recognizer(with_level(base, level), "cpu", runtime="eager")
            accs = []
            for x in sets.values():
                pred = [base.labels[i] for i in rec.probabilities(x).argmax(1)]
                accs.append(100 * np.mean([p == t for p, t in zip(pred, truth)]))
            print(f"| {Path(path).name} | {level or 'off'} | " + " | ".join(f"{a:.1f}" for a in accs) + " |")
    if args.write:
        level, out = float(args.write[0]), args.write[1]
        ck = remeasured(with_level(first, level), args.data)
        save_checkpoint(ck, out)
        print(f"\nwrote {args.models[0]} with dynamic_range_db={level} to {out}: "
              + ", ".join(f"{k} {ck.metrics[k]:.4f}" for k in ("val_acc", "test_acc", "test_unknown_recall") if k in ck.metrics))


if __name__ == "__main__":
    main()
