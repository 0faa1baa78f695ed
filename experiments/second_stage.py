"""Would a second-stage check by the clip model help the streaming recognizer?
Every detection of the streaming model (its rule: the calibrated one, or one
threshold for every command) is classified again by the clip model on its own
window (``Recognizer.window`` centres the speech), and kept only when the clip
model agrees: the detected label's probability at least P, or its top label.
Prints correct / missed / wrong on the command stream and false alarms an hour
on the read-speech stream for each setting, as a markdown table (the model
card's "Tried ... and not kept"). Runs the streaming model once per stream.

    python experiments/second_stage.py STREAM_DIR [--split val] [--stream-model M] [--clip-model M]

STREAM_DIR holds SPLIT.wav/.csv and SPLIT_talk.wav (README: make-stream).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from speechlstm.audio import read_audio
from speechlstm.infer import Recognizer
from speechlstm.stream import Detection, StreamingRecognizer
from speechlstm.stream_eval import record, replay, score_stream
from speechlstm.stream_make import read_truth

THRESHOLDS = (0.4, 0.45, 0.5, 0.55, 0.6)
MIN_PROBS = (0.05, 0.1, 0.2, 0.3, 0.5)
CONTEXTS_MS = (0.0, 250.0)  # more audio on each side of the deciding window


def clip_probs(clip_model: Recognizer, audio: np.ndarray, dets: list[Detection], context_ms: float) -> np.ndarray:
    """The clip model's posteriors for each detection's window: (len(dets), n_labels)."""
    rate = clip_model.sample_rate
    clips = []
    for d in dets:
        lo = max(0, int((d.start_ms - context_ms) * rate / 1000))
        hi = int((d.time_ms + context_ms) * rate / 1000)
        clips.append(clip_model.window(audio[lo:hi])[0])
    return clip_model.probabilities(np.stack(clips)) if clips else np.zeros((0, len(clip_model.labels)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("streams", type=Path)
    p.add_argument("--split", default="val")
    p.add_argument("--stream-model", help="default: the shipped commands12.pt")
    p.add_argument("--clip-model", help="default: the shipped commands12.pt")
    args = p.parse_args()
    torch.set_num_threads(1)

    streamer = StreamingRecognizer(Recognizer.from_checkpoint(args.stream_model, "cpu", runtime="eager"))
    clip_model = Recognizer.from_checkpoint(args.clip_model, "cpu", runtime="eager")
    labels = streamer.recognizer.labels
    audio, recs = {}, {}
    for name, truth_csv in ((args.split, args.streams / f"{args.split}.csv"), (f"{args.split}_talk", None)):
        audio[name] = read_audio(args.streams / f"{name}.wav", streamer.sample_rate)[0]
        truth = read_truth(truth_csv) if truth_csv else []
        recs[name] = record(streamer, audio[name], truth)[0]
    commands, talk = recs[args.split], recs[f"{args.split}_talk"]

    base = streamer.config
    rules = [("calibrated", base)] + [(f"{t:.2f}", dataclasses.replace(base, threshold=t, thresholds={}))
                                      for t in THRESHOLDS]
    print("| rule | check | context ms | correct % | missed % | wrong % | false alarms / h, read speech |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for rule_name, cfg in rules:
        dets = {name: replay(r, labels, cfg) for name, r in recs.items()}
        for context_ms in CONTEXTS_MS:
            probs = {name: clip_probs(clip_model, audio[name], d, context_ms) for name, d in dets.items()}
            checks = [("none", None)] if context_ms == 0 else []
            checks += [(f"p >= {v}", v) for v in MIN_PROBS] + [("top label", -1.0)]
            for check_name, v in checks:
                kept = {}
                for name, d in dets.items():
                    idx = [labels.index(x.label) for x in d]
                    kept[name] = [x for x, i, pr in zip(d, idx, probs[name])
                                  if v is None or (pr.argmax() == i if v < 0 else pr[i] >= v)]
                s = score_stream(kept[args.split], commands.truth, commands.duration_ms, commands.clip_ms)
                fa = 3600e3 * len(kept[f"{args.split}_talk"]) / talk.duration_ms
                print(f"| {rule_name} | {check_name} | {context_ms:.0f} | {s['correct_pct']} | {s['missed_pct']} "
                      f"| {s['wrong_pct']} | {fa:.1f} |", flush=True)


if __name__ == "__main__":
    main()
