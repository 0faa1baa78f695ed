"""How often does a model take an isolated other word for a command? Every non-command
word clip of a force-aligned corpus (`speechlstm corpus DIR --out WORDS`), one clip each,
scored by each model: the share where a command gets at least 0.3 / 0.5 / 0.7, and the
words it happens on most (docs/research.md, "Confusable words"). Thousands of words give
more events than an hour of read speech does, for comparing models on validation speakers.

    python experiments/other_words.py WORDS [--half validation] MODEL.pt ...

--half: only the speakers of that half of `corpus.speaker_half` (as `make-stream --talk-half`).
"""

from __future__ import annotations

import argparse
import collections
import csv
from pathlib import Path

import numpy as np

from speechlstm.audio import pad_or_trim, read_audio
from speechlstm.checkpoint import load_checkpoint
from speechlstm.corpus import speaker_half
from speechlstm.labels import COMMANDS10
from speechlstm.infer import Recognizer

THRESHOLDS = (0.3, 0.5, 0.7)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("words", type=Path, help="speechlstm corpus output (manifest.csv and word folders)")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--half", choices=("all", "validation", "test"), default="all")
    args = ap.parse_args()
    with open(args.words / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["word"] not in COMMANDS10 and (args.words / r["file"]).is_file()
                and (args.half == "all" or speaker_half(r["speaker"]) == args.half)]
    features = load_checkpoint(args.models[0]).features  # every model here hears the same clips
    rate, n = features.sample_rate, features.clip_samples
    clips = np.stack([pad_or_trim(read_audio(args.words / r["file"], rate)[0], n) for r in rows])
    print(f"{len(rows)} other-word clips of {len({r['speaker'] for r in rows})} speakers")
    print("| model | " + " | ".join(f"command >= {t}" for t in THRESHOLDS) + " | most often |")
    print("|---|" + "---:|" * len(THRESHOLDS) + "---|")
    for path in args.models:
        rec = Recognizer.from_checkpoint(path, runtime="eager")
        probs = np.concatenate([rec.probabilities(clips[i : i + 512]) for i in range(0, len(clips), 512)])
        commands = [i for i, name in enumerate(rec.labels) if name in COMMANDS10]
        score = probs[:, commands].max(1)
        label = [rec.labels[commands[j]] for j in probs[:, commands].argmax(1)]
        common = collections.Counter(f'{rows[i]["word"]} → {label[i]}' for i in np.flatnonzero(score >= 0.5))
        shares = " | ".join(f"{100 * np.mean(score >= t):.2f}%" for t in THRESHOLDS)
        print(f"| {path} | {shares} | " + ", ".join(f"{w} {n}" for w, n in common.most_common(5)) + " |")


if __name__ == "__main__":
    main()
