"""The same clips through our model and the recognizers a user could pick instead,
in one run, one clip at a time on one thread: 12-class accuracy with a 95%
interval, per-class recall, other words accepted as a command, and the time a
clip takes from samples in memory to a label (reading the file is not timed;
our MFCC is included).

    python benchmarks/peers.py                                   # test_mini, every peer installed
    python benchmarks/peers.py --systems ours,pocketsphinx-grammar --json out.json
    python benchmarks/peers.py --clips DIR --limit 40            # a few clips (the harness test)

Systems:
- ``ours``: ``Recognizer.from_checkpoint()`` with its default runtime (on a CPU:
  ONNX Runtime, int8 weights); ``ours-eager``: the same model in PyTorch fp32.
- ``pocketsphinx-grammar``: PocketSphinx 5 (US-English acoustic model inside its
  wheel) with a JSGF grammar of the ten commands, how PocketSphinx is set up for
  commands. It always names a command or nothing: nothing -> ``_silence_``.
- ``pocketsphinx-lm``: PocketSphinx with its general English language model; the
  transcript is mapped the way a user maps an ASR's: empty -> ``_silence_``, one
  command word alone -> that command, anything else -> ``_unknown_``.

The peers need ``pip install -e ".[align]"`` (pocketsphinx; in ``.[test]`` too);
one that is not installed is skipped with a note. Clips come in the canonical
12-class layout (``word/*.wav``, ``_unknown_/``, ``_silence_/``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TEST_MINI = ROOT.parent / "shared" / "data" / "speech_commands_test_mini"
SILENCE, UNKNOWN = "_silence_", "_unknown_"


@dataclass
class System:
    name: str
    classify: Callable[[np.ndarray], str]  # one clip, float32 mono at 16 kHz -> a 12-class label
    about: str


def ours(runtime: str) -> System:
    import torch

    from speechlstm import Recognizer

    torch.set_num_threads(1)
    rec = Recognizer.from_checkpoint(device="cpu", runtime=runtime, threads=1)
    return System("ours" if runtime == "auto" else f"ours-{runtime}",
                  lambda x: rec.predict(x, rec.sample_rate, top_k=1).label, rec.backend)


def _sphinx(commands: list[str], grammar: bool) -> System:
    from pocketsphinx import Decoder  # ImportError: the peer is skipped

    dec = Decoder(samprate=16000, loglevel="FATAL")
    if grammar:
        dec.add_jsgf_string("commands", "#JSGF V1.0;\ngrammar commands;\npublic <command> = "
                            + " | ".join(commands) + " ;\n")
        dec.activate_search("commands")

    def classify(x: np.ndarray) -> str:
        pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
        dec.start_utt()
        dec.process_raw(pcm.tobytes(), full_utt=True)
        dec.end_utt()
        hyp = dec.hyp()
        return map_transcript(hyp.hypstr if hyp is not None else "", commands)

    return System(f"pocketsphinx-{'grammar' if grammar else 'lm'}", classify,
                  "JSGF grammar of the commands" if grammar else "general English language model")


def map_transcript(text: str, commands: list[str]) -> str:
    """An ASR transcript -> a 12-class label: empty -> silence, one command word alone
    -> it, anything else -> unknown."""
    words = [w.strip(".,!?;:'\"").lower() for w in text.split()]
    words = [w for w in words if w]
    if not words:
        return SILENCE
    return words[0] if len(words) == 1 and words[0] in commands else UNKNOWN


FACTORIES: dict[str, Callable[[list[str]], System]] = {
    "ours": lambda c: ours("auto"),
    "ours-eager": lambda c: ours("eager"),
    "pocketsphinx-grammar": lambda c: _sphinx(c, grammar=True),
    "pocketsphinx-lm": lambda c: _sphinx(c, grammar=False),
}


def load_clips(root: Path, limit: int | None) -> tuple[list[np.ndarray], list[str]]:
    """Every clip of the canonical layout, as 16 kHz float32; ``limit``: an even spread of that many."""
    from speechlstm.audio import read_audio

    paths = sorted(p for p in root.glob("*/*.wav"))
    if limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, min(limit, len(paths))).round().astype(int)]
    return [read_audio(p, 16000)[0] for p in paths], [p.parent.name for p in paths]


def score(system: System, clips: list[np.ndarray], labels: list[str], commands: list[str],
          warmup: int = 3) -> dict:
    from speechlstm.evaluate import wilson_interval

    for x in clips[:warmup]:
        system.classify(x)
    preds, seconds = [], []
    for x in clips:
        t = time.perf_counter()
        preds.append(system.classify(x))
        seconds.append(time.perf_counter() - t)
    y, p = np.array(labels), np.array(preds)
    correct = int((y == p).sum())
    lo, hi = wilson_interval(correct, len(y))
    other = y == UNKNOWN
    classes = commands + [SILENCE, UNKNOWN]
    return {"system": system.name, "about": system.about, "clips": len(y), "accuracy": correct / len(y),
            "ci95": [lo, hi],
            "recall": {c: float((p[y == c] == c).mean()) for c in classes if (y == c).any()},
            "other_words_accepted": float(np.isin(p[other], commands).mean()) if other.any() else None,
            "median_ms": 1000 * float(np.median(seconds)), "p95_ms": 1000 * float(np.percentile(seconds, 95))}


def table(results: list[dict]) -> str:
    base = next((r["median_ms"] for r in results if r["system"] == "ours"), None)
    lines = ["| system | accuracy (95% CI) | other words taken for a command | ms a clip, median (p95) | vs ours |",
             "|---|---:|---:|---:|---:|"]
    for r in results:
        oth = "" if r["other_words_accepted"] is None else f"{100 * r['other_words_accepted']:.1f}%"
        ratio = f"{r['median_ms'] / base:.1f}x" if base else ""
        lines.append(f"| {r['system']} ({r['about']}) | {100 * r['accuracy']:.1f}% "
                     f"({100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f}) | {oth} | "
                     f"{r['median_ms']:.2f} ({r['p95_ms']:.2f}) | {ratio} |")
    recall_names = list(results[0]["recall"]) if results else []
    lines += ["", "| recall | " + " | ".join(recall_names) + " |", "|---|" + "---:|" * len(recall_names)]
    lines += [f"| {r['system']} | " + " | ".join(f"{100 * r['recall'].get(c, 0):.0f}" for c in recall_names) + " |"
              for r in results]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=Path, default=TEST_MINI, help="canonical 12-class layout (default: test_mini)")
    ap.add_argument("--systems", default=",".join(FACTORIES), help=f"comma list of {', '.join(FACTORIES)}")
    ap.add_argument("--limit", type=int, help="an even spread of this many clips")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    from speechlstm.checkpoint import load_checkpoint

    commands = [x for x in load_checkpoint().labels if not x.startswith("_")]
    clips, labels = load_clips(args.clips, args.limit)
    if not clips:
        print(f"no clips under {args.clips}", file=sys.stderr)
        return 1
    results = []
    for name in args.systems.split(","):
        if name not in FACTORIES:
            ap.error(f"unknown system {name!r}")
        try:
            system = FACTORIES[name](commands)
        except ImportError as e:
            print(f"skipped {name}: {e}", file=sys.stderr)
            continue
        print(f"{name}: {len(clips)} clips ...", file=sys.stderr, flush=True)
        results.append(score(system, clips, labels, commands))
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
