"""Enrolment benchmark: words the model was never trained to recognise, real recordings.

For each word and each of ``--speakers`` speakers with at least 5 recordings of it:

- enrol the word from 5 of that speaker's recordings (``speechlstm.enroll``: its checks,
  fitting, threshold; the time it takes);
- **other speakers**: the share of other speakers' recordings of the word (one each) that
  the recognizer (``--checkpoint`` + the word) labels as the word;
- **stream, other speakers**: up to ``--stream-clips`` of those recordings 1.5 s apart in one
  stream through the streaming recognizer with the word: the share it detects as the word;
- **same speaker**: each of the 5 in turn is held out, the word enrolled from the other 4,
  and the held-out one recognized (a speaker with 6+ recordings of a word is rare in these sets);
- **other words**: the share of other words' recordings (other speakers, every other word
  of ``--clips``, and ``--other`` folders) labelled as the word;
- **read speech**: detections of the word an hour, by the streaming recognizer's rule
  (``--checkpoint``'s), over ``--talk-minutes`` of ``--talk`` read speech.

Speakers of ``--exclude-speakers-of`` (the clips the shipped models were trained on) are left out.
Several ``--false-accept-rate`` and ``--stream-threshold`` values score every try at each, in
one run: clips are scored once, and each stream runs once through the recognizer and is replayed
(``stream_eval.replay``) with each head and threshold, which gives the detections a
StreamingRecognizer with the word gives, without running it again.

    python benchmarks/enroll.py --clips /work/data/minali/audio/audio --words zero,one,five,eight \\
        --other ../shared/data/speech_commands_test_mini --talk /work/data/test-clean --json out.json
"""

import argparse
import collections
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from speechlstm.audio import read_audio
from speechlstm.checkpoint import Words
from speechlstm.enroll import FALSE_ACCEPT_RATE, STREAM_THRESHOLD, Embedder, WordSpotter, enroll, merge
from speechlstm.errors import EnrollError
from speechlstm.infer import Recognizer
from speechlstm.runtime import softmax
from speechlstm.stream import StreamingRecognizer, with_words
from speechlstm.stream_eval import record, replay

SHOTS = 5


def speaker(path: Path) -> str:
    return path.name.split("_")[0]


def training_speakers(root: Path | None) -> set[str]:
    if root is None:
        return set()
    listed = set()
    for name in ("validation_list.txt", "testing_list.txt"):
        if (root / name).is_file():
            listed |= set((root / name).read_text().split())
    return {speaker(f) for f in root.glob("*/*.wav") if f"{f.parent.name}/{f.name}" not in listed}


def talk_audio(root: Path, minutes: float, rate: int) -> np.ndarray:
    files, out, total = sorted(root.rglob("*.flac")) + sorted(root.rglob("*.wav")), [], 0
    for f in files:
        x, _ = read_audio(f, rate)
        out.append(x)
        total += len(x)
        if total >= minutes * 60 * rate:
            break
    return np.concatenate(out)[: int(minutes * 60 * rate)]


def hop_embeddings(embedder: Embedder, audio: np.ndarray, times_ms: np.ndarray, rate: int) -> np.ndarray:
    """The embedding of the 1 s that ends at each hop (what a StreamingRecognizer's words see)."""
    n, ends = embedder.clip_samples, np.round(times_ms * rate / 1000).astype(int)
    return np.concatenate([embedder(np.stack([np.pad(audio[max(0, e - n) : e], (max(0, n - e), 0))
                                              for e in ends[i : i + 512]])) for i in range(0, len(ends), 512)])


def word_stream(rec: Recognizer, clips: list[Path]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Other speakers' recordings of the word, 1.5 s apart over quiet noise: (audio, their spans in ms)."""
    rate, rng = rec.sample_rate, np.random.default_rng(0)
    gap = round(1.5 * rate)
    parts, spans = [], []
    at = gap
    for f in clips:
        x = read_audio(f, rate)[0]
        parts += [(0.003 * rng.standard_normal(gap)).astype(np.float32), x]
        spans.append((at / rate * 1000, (at + len(x)) / rate * 1000))
        at += len(x) + gap
    parts.append((0.003 * rng.standard_normal(gap)).astype(np.float32))
    return np.concatenate(parts), spans


class Recorded:
    """A stream run once through the recognizer (every hop's posteriors) and the embedder (every
    hop's last second): replayed with a word's head and thresholds, its detections are what a
    StreamingRecognizer with that word gives (the same numbers, without running it again)."""

    def __init__(self, rec: Recognizer, embedder: Embedder, audio: np.ndarray):
        self.rec = rec
        self.recording, _ = record(StreamingRecognizer(rec), audio, [], progress=False)
        self.z = hop_embeddings(embedder, audio, self.recording.times_ms, rec.sample_rate)  # (hops, D)

    def detections(self, spotter: WordSpotter, stream_threshold: float) -> list:
        labels = list(self.rec.checkpoint.labels)
        merged = merge(self.recording.probs, labels, spotter.probabilities_of(self.z))
        config = with_words(self.rec.checkpoint.streaming, spotter.names, stream_threshold)
        return replay(dataclasses.replace(self.recording, probs=merged), labels + spotter.names, config)


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=Path, required=True, help="word/SPEAKER_nohash_N.wav recordings")
    p.add_argument("--words", default="zero,one,five,eight")
    p.add_argument("--other", type=Path, nargs="*", default=[], help="more folders of other words (word/*.wav)")
    p.add_argument("--talk", type=Path, help="read speech (LibriSpeech layout) for false accepts an hour")
    p.add_argument("--talk-minutes", type=float, default=60.0)
    p.add_argument("--speakers", type=int, default=5, help="enrolling speakers a word")
    p.add_argument("--others", type=int, default=100, help="other speakers' recordings a word")
    p.add_argument("--negatives", type=int, default=400, help="other words' recordings an enrolment")
    p.add_argument("--stream-clips", type=int, default=40, help="other speakers' recordings in a stream")
    p.add_argument("--exclude-speakers-of", type=Path, action="append",
                   help="Speech Commands trees the models were trained on (repeatable; default: the mini set); "
                   "with the embedder's, experiments/embedder.sh's OUT_DIR/data")
    p.add_argument("--embedder", help="embedding model (default: the shipped one)")
    p.add_argument("--checkpoint", help="the recognizer, for clips and streams (default: the shipped commands12 model)")
    p.add_argument("--false-accept-rate", type=floats, default=[FALSE_ACCEPT_RATE], metavar="R[,R...]",
                   help="each word's threshold: the share of the embedder's held-out negatives it lets through; "
                   "several: every try is scored at each (one run, the same trials)")
    p.add_argument("--stream-threshold", type=floats, default=[STREAM_THRESHOLD], metavar="T[,T...]",
                   help="a word's merged probability that fires in a stream (default enroll.STREAM_THRESHOLD); "
                   "several, as --false-accept-rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    embedder = Embedder.from_checkpoint(args.embedder)
    rec = Recognizer.from_checkpoint(args.checkpoint, device="cpu")
    labels = list(rec.checkpoint.labels)
    roots = args.exclude_speakers_of or [Path("../shared/data/speech_commands_mini")]
    skip = set().union(*(training_speakers(r if r.is_dir() else None) for r in roots))
    by = collections.defaultdict(list)
    for f in sorted(args.clips.glob("*/*.wav")):
        if not f.parent.name.startswith("_") and speaker(f) not in skip:
            by[(f.parent.name, speaker(f))].append(f)
    others = sorted(f for d in args.other for f in d.glob("*/*.wav") if not f.parent.name.startswith("_"))
    words = args.words.split(",")
    rates, stream_thresholds = args.false_accept_rate, args.stream_threshold

    cache: dict[Path, tuple[np.ndarray, np.ndarray]] = {}

    def scored(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        """Files -> the classifier's (B, L) probabilities and the embedder's (B, D) vectors of
        the clips a Recognizer hears (each file's 1 s around the speech)."""
        new = [f for f in dict.fromkeys(files) if f not in cache]
        if new:
            clips = np.stack([rec.prepare(f)[0] for f in new])
            for f, pr, z in zip(new, softmax(rec.logits(clips)), embedder(clips)):
                cache[f] = (pr, z)
        return (np.stack([cache[f][0] for f in files]), np.stack([cache[f][1] for f in files])) if files else \
            (np.zeros((0, len(labels))), np.zeros((0, embedder.negatives.shape[1])))

    def heard(files: list[Path], spotter: WordSpotter) -> np.ndarray:
        """(B,) bool: the Recognizer with the spotter's word labels each file as it."""
        probs, z = scored(files)
        return merge(probs, labels, spotter.probabilities_of(z)).argmax(axis=1) == len(labels)

    def enrolled(word: str, clips: list[Path]) -> tuple[dict, float]:
        """The word enrolled from ``clips`` at each rate: ({rate: WordSpotter}, seconds the
        first rate's enrolment took: what a user waits for); EnrollError if refused."""
        out, seconds = {}, 0.0
        for rate in rates:
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                entry = enroll(word, clips, tmp, embedder=embedder, classifier=rec, false_accept_rate=rate)
            if rate == rates[0]:
                seconds = time.perf_counter() - t0
            out[rate] = WordSpotter(embedder, Words(embedder.digest, embedder.kind, {entry.name: entry}))
        return out, seconds

    talk = None
    if args.talk:
        t0 = time.perf_counter()
        audio = talk_audio(args.talk, args.talk_minutes, rec.sample_rate)
        talk = (Recorded(rec, embedder, audio), len(audio) / rec.sample_rate / 3600)
        print(f"read speech: {talk[1] * 60:.1f} min, {len(talk[0].z)} hops embedded in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)

    rows = []
    for word in words:
        speakers = sorted(s for (w, s), fs in by.items() if w == word and len(fs) >= SHOTS)
        random.Random(f"{args.seed}/{word}").shuffle(speakers)
        for spk in speakers[: args.speakers]:
            # each enrolment draws from its own seed: the same speakers and the same clips whatever the
            # embedder does elsewhere (a refusal), so two embedders are compared on the same trials
            rng = random.Random(f"{args.seed}/{word}/{spk}")
            mine = by[(word, spk)][:SHOTS]
            try:
                spotters, seconds = enrolled(word, mine)
            except EnrollError as e:
                rows.append({"word": word, "speaker": spk, "refused": str(e)})
                print(f"{word} {spk}: refused: {e}", file=sys.stderr)
                continue
            theirs = [fs[0] for (w, s), fs in by.items() if w == word and s != spk]
            rng.shuffle(theirs)
            negs = [fs[0] for (w, s), fs in by.items() if w != word and s != spk] + \
                [f for f in others if f.parent.name != word]
            rng.shuffle(negs)
            stream_audio, spans = word_stream(rec, theirs[: args.stream_clips])
            stream = Recorded(rec, embedder, stream_audio)
            same = {rate: [] for rate in rates}
            for k in range(SHOTS):  # leave one out: 4 to enrol, the fifth to hear
                try:
                    four = enrolled(word, [f for j, f in enumerate(mine) if j != k])[0]
                except EnrollError:
                    four = {}
                for rate in rates:
                    same[rate].append(bool(heard([mine[k]], four[rate])[0]) if four else False)
            for rate in rates:
                spotter = spotters[rate]
                clip_scores = {"same_speaker_4shot": float(np.mean(same[rate])),
                               "other_speakers": float(np.mean(heard(theirs[: args.others], spotter))),
                               "other_words": float(np.mean(heard(negs[: args.negatives], spotter)))}
                for st in stream_thresholds:
                    dets = stream.detections(spotter, st)
                    row = {"word": word, "speaker": spk, "false_accept_rate": rate, "stream_threshold": st,
                           "enroll_s": round(seconds, 2), "threshold": spotter.words.words[word].threshold,
                           **clip_scores,
                           "stream_other_speakers": float(np.mean([
                               any(d.label == word and a - 200 <= d.time_ms <= b + 1000 for d in dets)
                               for a, b in spans])) if spans else float("nan")}
                    if talk is not None:
                        talk_rec, hours = talk
                        row["read_speech_per_hour"] = sum(d.label == word for d in
                                                          talk_rec.detections(spotter, st)) / hours
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr)

    keys = ["same_speaker_4shot", "other_speakers", "stream_other_speakers", "other_words", "read_speech_per_hour",
            "enroll_s"]
    refused = sum("refused" in r for r in rows)
    summaries = []
    for rate in rates:
        for st in stream_thresholds:
            done = [r for r in rows if r.get("false_accept_rate") == rate and r.get("stream_threshold") == st]
            summaries.append({"false_accept_rate": rate, "stream_threshold": st, "enrolments": len(done),
                              "refused": refused,
                              **{k: round(statistics.mean(r[k] for r in done), 4) for k in keys
                                 if done and k in done[0]},
                              "enroll_s_median": round(statistics.median(r["enroll_s"] for r in done), 3) if done else None})
    summary = summaries[0] if len(summaries) == 1 else summaries
    print(json.dumps(summary, indent=1))
    if len(summaries) > 1:
        print("| rate | stream threshold | same speaker | other speakers | stream | other words | read speech an hour |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for m in summaries:
            print(f"| {m['false_accept_rate']:g} | {m['stream_threshold']:g} | "
                  + " | ".join(f"{100 * m.get(k, float('nan')):.{2 if k == 'other_words' else 1}f}%" for k in keys[:4])
                  + f" | {m.get('read_speech_per_hour', float('nan')):.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows, "args": vars(args)}, indent=1,
                                        default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
