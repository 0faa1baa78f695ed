"""Score trained checkpoints for issue 12's table, one JSON beside each (<model>.eval.json):
validation figures from training, test_mini accuracy and its out-of-vocabulary -> _unknown_ rate,
the test list's other words -> _unknown_ (from training), and with --speech false alarms per hour
on command-free read speech by held-out speakers at the default streaming rule (StreamConfig()).
    python experiments/learn_more_eval.py --test-mini DIR [--speech talk.wav] MODEL.pt ...
    python experiments/learn_more_eval.py --table RUN_DIR   # mean +- sd over seeds per recipe
    python experiments/learn_more_eval.py --test-mini DIR --ensemble A.pt B.pt C.pt   # their mean posteriors"""

import argparse
import glob
import json
import re
import statistics as st

import numpy as np
from collections import defaultdict
from pathlib import Path

from speechlstm.audio import read_audio
from speechlstm.checkpoint import load_checkpoint
from speechlstm.config import StreamConfig
from speechlstm.evaluate import evaluate, find_items, to_vocabulary
from speechlstm.infer import Recognizer
from speechlstm.stream import StreamingRecognizer
from speechlstm.stream_eval import evaluate as evaluate_stream
from speechlstm.stream_eval import record

COLUMNS = (("val_acc", "val acc %"), ("val_unknown_recall", "val other words -> _unknown_ %"),
           ("test_mini_acc", "test_mini %"), ("test_mini_oov", "test_mini _unknown_ recall %"),
           ("test_unknown_recall", "test list other words -> _unknown_ %"),
           ("speech_false_alarms_per_hour", "false alarms/h, held-out read speech"))


def score(path: Path, test_mini: str, speech: str | None) -> dict:
    ckpt = load_checkpoint(path)
    out = {k: ckpt.metrics.get(k) for k in ("val_acc", "val_unknown_recall", "test_acc", "test_unknown_recall")}
    rec = Recognizer(ckpt, device="cpu", runtime="eager")
    report = evaluate(rec, find_items(test_mini), progress=False, latency_clips=0).data
    out.update(test_mini_acc=report["accuracy"], test_mini_oov=report.get("oov_to_unknown"))
    if speech:
        streamer = StreamingRecognizer(rec, StreamConfig())
        audio, _ = read_audio(speech, streamer.sample_rate)
        recording, _ = record(streamer, audio, [], progress=False)
        out.update(evaluate_stream([], [recording], ckpt.labels, StreamConfig()))
    return out


def ensemble(paths: list[Path], test_mini: str) -> dict:
    """test_mini accuracy and _unknown_ recall of the models' mean posteriors."""
    recs = [Recognizer(load_checkpoint(p), device="cpu", runtime="eager") for p in paths]
    items, labels = find_items(test_mini), recs[0].labels
    truth = np.array([labels.index(to_vocabulary(label, labels)) for label in items.labels])
    clips = np.stack([recs[0].prepare(p)[0] for p in items.paths])
    pred = np.mean([r.probabilities(clips) for r in recs], axis=0).argmax(1)
    unknown = labels.index("_unknown_")
    return {"test_mini_acc": round(float((pred == truth).mean()), 4),
            "test_mini_oov": round(float((pred[truth == unknown] == unknown).mean()), 4)}


def table(run_dir: str) -> str:
    groups = defaultdict(list)
    for f in sorted(glob.glob(f"{run_dir}/*-s[0-9].eval.json")):
        groups[re.sub(r"-s\d\.eval\.json$", "", Path(f).name)].append(json.load(open(f)))
    order = ["baseline", "pool", "extra", "pretrained", "distilled", "toy_real", "hardneg", "joined", "positives", "share60"]
    groups = dict(sorted(groups.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    lines = ["| recipe | seeds | " + " | ".join(c for _, c in COLUMNS) + " |", "|---|---:|" + "---:|" * len(COLUMNS)]
    for name, rows in groups.items():
        cells = []
        for key, _ in COLUMNS:
            xs = [r[key] * (1 if key.endswith("per_hour") else 100) for r in rows if r.get(key) is not None]
            cells.append("" if not xs else f"{st.mean(xs):.1f}" + (f" ± {st.stdev(xs):.1f}" if len(xs) > 1 else ""))
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="*", type=Path)
    p.add_argument("--test-mini")
    p.add_argument("--speech", help="command-free read speech by speakers never trained on (a .wav)")
    p.add_argument("--table", metavar="RUN_DIR")
    p.add_argument("--ensemble", action="store_true", help="score the models' mean posteriors on test_mini")
    args = p.parse_args()
    if args.table:
        print(table(args.table))
    if args.ensemble:
        print(ensemble(args.models, args.test_mini))
        raise SystemExit(0)
    for m in args.models:
        res = score(m, args.test_mini, args.speech)
        m.with_suffix(".eval.json").write_text(json.dumps(res, indent=1))
        print(m, {k: res.get(k) for k, _ in COLUMNS})
