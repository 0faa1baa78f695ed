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
from speechlstm.enroll import FALSE_ACCEPT_RATE, Embedder, WordSpotter, enroll, merge
from speechlstm.checkpoint import load_words
from speechlstm.errors import EnrollError
from speechlstm.infer import Recognizer
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


def stream_hits(rec: Recognizer, spotter: WordSpotter, word: str, clips: list[Path]) -> float:
    """Other speakers' recordings of the word, 1.5 s apart over quiet noise, through a
    StreamingRecognizer with the word: the share of them it detects as the word."""
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
    rec.set_words(spotter)
    try:
        dets = StreamingRecognizer(rec).push(np.concatenate(parts), last=True)
    finally:
        rec.set_words(None)
    heard = [any(d.label == word and a - 200 <= d.time_ms <= b + 1000 for d in dets) for a, b in spans]
    return float(np.mean(heard)) if heard else float("nan")


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
    p.add_argument("--false-accept-rate", type=float, default=FALSE_ACCEPT_RATE,
                   help="each word's threshold: the share of the embedder's held-out negatives it lets through")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    embedder = Embedder.from_checkpoint(args.embedder)
    rec = Recognizer.from_checkpoint(args.checkpoint, device="cpu")
    roots = args.exclude_speakers_of or [Path("../shared/data/speech_commands_mini")]
    skip = set().union(*(training_speakers(r if r.is_dir() else None) for r in roots))
    by = collections.defaultdict(list)
    for f in sorted(args.clips.glob("*/*.wav")):
        if not f.parent.name.startswith("_") and speaker(f) not in skip:
            by[(f.parent.name, speaker(f))].append(f)
    others = sorted(f for d in args.other for f in d.glob("*/*.wav") if not f.parent.name.startswith("_"))
    words = args.words.split(",")

    talk = None
    if args.talk:
        t0 = time.perf_counter()
        audio = talk_audio(args.talk, args.talk_minutes, rec.sample_rate)
        talk_rec, _ = record(StreamingRecognizer(rec), audio, [], progress=False)
        n = rec.clip_samples
        ends = np.round(talk_rec.times_ms * rec.sample_rate / 1000).astype(int)
        windows_z = np.concatenate([embedder(np.stack([np.pad(audio[max(0, e - n) : e], (max(0, n - e), 0))
                                                       for e in ends[i : i + 512]]))
                                    for i in range(0, len(ends), 512)])
        talk = (talk_rec, windows_z, len(audio) / rec.sample_rate / 3600)
        print(f"read speech: {talk[2] * 60:.1f} min, {len(ends)} hops embedded in {time.perf_counter() - t0:.0f} s",
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
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                try:
                    entry = enroll(word, mine, tmp, embedder=embedder, classifier=rec,
                                   false_accept_rate=args.false_accept_rate)
                except EnrollError as e:
                    rows.append({"word": word, "speaker": spk, "refused": str(e)})
                    print(f"{word} {spk}: refused: {e}", file=sys.stderr)
                    continue
                seconds = time.perf_counter() - t0
                spotter = WordSpotter(embedder, load_words(tmp))
                rec.set_words(spotter)
                theirs = [fs[0] for (w, s), fs in by.items() if w == word and s != spk]
                rng.shuffle(theirs)
                hit_other = float(np.mean([p.label == word for p in rec.predict_batch(theirs[: args.others])]))
                negs = [fs[0] for (w, s), fs in by.items() if w != word and s != spk] + \
                    [f for f in others if f.parent.name != word]
                rng.shuffle(negs)
                fa_words = float(np.mean([p.label == word for p in rec.predict_batch(negs[: args.negatives])]))
                row = {"word": word, "speaker": spk, "enroll_s": round(seconds, 2), "threshold": entry.threshold,
                       "other_speakers": hit_other, "other_words": fa_words,
                       "stream_other_speakers": stream_hits(rec, spotter, word, theirs[: args.stream_clips])}
                if talk is not None:
                    talk_rec, z, hours = talk
                    q = 1 / (1 + np.exp(-(z @ spotter.W.T + spotter.b)))
                    merged = merge(talk_rec.probs, rec.checkpoint.labels, q)
                    labels = list(rec.checkpoint.labels) + spotter.names
                    config = with_words(rec.checkpoint.streaming, spotter.names)  # a StreamingRecognizer's
                    dets = replay(dataclasses.replace(talk_rec, probs=merged), labels, config)
                    row["read_speech_per_hour"] = sum(d.label == word for d in dets) / hours
            rec.set_words(None)
            same = []
            for k in range(SHOTS):  # leave one out: 4 to enrol, the fifth to hear
                with tempfile.TemporaryDirectory() as tmp:
                    try:
                        enroll(word, [f for j, f in enumerate(mine) if j != k], tmp, embedder=embedder,
                               classifier=rec, false_accept_rate=args.false_accept_rate)
                    except EnrollError:
                        same.append(False)
                        continue
                    rec.set_words(WordSpotter(embedder, load_words(tmp)))
                    same.append(rec.predict_file(mine[k]).label == word)
                    rec.set_words(None)
            row["same_speaker_4shot"] = float(np.mean(same))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)

    done = [r for r in rows if "refused" not in r]
    keys = ["same_speaker_4shot", "other_speakers", "stream_other_speakers", "other_words", "read_speech_per_hour",
            "enroll_s"]
    summary = {"enrolments": len(done), "refused": len(rows) - len(done),
               **{k: round(statistics.mean(r[k] for r in done), 4) for k in keys if done and k in done[0]},
               "enroll_s_median": statistics.median(r["enroll_s"] for r in done) if done else None}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows, "args": vars(args)}, indent=1,
                                        default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
