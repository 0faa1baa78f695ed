"""`speechlstm` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .config import RUNTIME_HELP, RUNTIMES
from .errors import ConfigError, DataError, SpeechLSTMError


def _sections(args: argparse.Namespace, named: dict[str, tuple[str, ...]]) -> dict[str, dict]:
    """Config sections from the named flags that were given (flag -> SECTION.KEY path), then
    every --set (--set train.optim.lr=1e-3 --set train.augment.snr_db=[0,10]: JSON values)."""
    from .config import merge
    from .recipes import parse_assignments

    given = {flag: getattr(args, flag) for flag in named if getattr(args, flag) is not None}
    sections = parse_assignments([f"{'.'.join(named[k])}={json.dumps(v)}" for k, v in given.items()], "flag")
    return merge(sections, parse_assignments(args.set, "--set"))


def _args_train(t: argparse.ArgumentParser) -> None:
    t.add_argument("--data-dir", required=True, help="Speech Commands root (word folders, lists)")
    t.add_argument("--out", required=True, type=Path, help="checkpoint to write (best on validation)")
    t.add_argument("--task", choices=["commands12", "words35"])
    t.add_argument("--epochs", type=int)
    t.add_argument("--seed", type=int)
    _args_run(t, "any config field, e.g. model.conv_stride=4, train.augment.speed=0.1, features.hop_ms=20, "
                 "train.optim.lr=1e-3 (sections: features, model, train.{optim,sampling,augment,windows,"
                 "distill,mining}; a whole recipe: `speechlstm recipe`)")
    t.add_argument("--cache-dir", help="where decoded clips are cached (default ~/.cache/speechlstm)")
    t.add_argument("--extra-data", action="append", metavar="DIR",
                   help="extra training clips in word/*.wav folders from elsewhere (`speechlstm synth`, "
                        "`speechlstm corpus`): train.sampling.synth_ratio, train.sampling.extra_unknown_ratio")
    t.add_argument("--more-data", action="append", metavar="DIR",
                   help="more Speech Commands clips (word/<speaker>_nohash_<n>.wav) joining the training split "
                        "as they are; speakers of the dataset's testing split (hash rule) are left out")
    t.add_argument("--talk", metavar="DIR",
                   help="read speech in the LibriSpeech layout, crops of it as _unknown_ rows (train.windows.talk_ratio); "
                        "utterances with a command word are not used")
    t.add_argument("--init-from", metavar="FILE",
                   help="start from a pretrained encoder (`speechlstm pretrain`), fine-tune a trained "
                        "checkpoint with the same labels, or start from the encoder of one with other labels "
                        "(a word classifier: `speechlstm wordset`) (same feature/model settings)")
    t.add_argument("--mine-with", metavar="CKPT",
                   help="draw train.mining.share of the --talk rows from this model's false alarms on them "
                        "(windows where it gives a command >= train.mining.min_score)")
    t.add_argument("--teacher", action="append", metavar="CKPT",
                   help="distil from trained models with the same labels (repeatable: their mean); "
                        "weight train.distill.weight (set it > 0), temperature train.distill.temperature")
    t.add_argument("--resume", action="store_true", help="continue from <out>.train-state.pt")


def _args_run(p: argparse.ArgumentParser, set_help: str) -> None:
    """The options every training command shares."""
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help=set_help + " (repeatable; JSON)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (under torchrun: one GPU a process)")
    p.add_argument("--max-steps", type=int, help="cap optimizer steps per epoch (smoke runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _train(args: argparse.Namespace) -> int:
    from .config import FeatureConfig, ModelConfig, from_dict
    from .train import TrainConfig, train

    if args.max_steps is not None and args.max_steps <= 0:
        raise SpeechLSTMError("--max-steps must be positive")
    sections = _sections(args, {"task": ("train", "task"), "epochs": ("train", "optim", "epochs"),
                                "seed": ("train", "optim", "seed")})
    unknown = set(sections) - {"train", "model", "features"}
    if unknown:
        raise SpeechLSTMError(f"--set {', '.join(sorted(unknown))}: sections are features, model and train")
    train(args.data_dir, args.out, from_dict(TrainConfig, sections.get("train")),
          from_dict(FeatureConfig, sections.get("features")), from_dict(ModelConfig, sections.get("model")),
          device=args.device, resume=args.resume, cache_dir=args.cache_dir, progress=not args.quiet,
          max_steps=args.max_steps, extra_data=tuple(args.extra_data or ()),
          more_data=tuple(args.more_data or ()), talk_dir=args.talk,
          init_from=args.init_from, teachers=tuple(args.teacher or ()), mine_with=args.mine_with)
    return 0


def _args_recipe(r: argparse.ArgumentParser) -> None:
    r.add_argument("recipe", type=Path, help="a recipe file, e.g. recipes/commands12.toml")
    r.add_argument("--out-dir", required=True, type=Path, help="where every stage writes its files")
    r.add_argument("--var", action="append", metavar="NAME=PATH", help="an input of the recipe's [vars]")
    r.add_argument("--only", metavar="STAGE", help="run this stage alone (its inputs must exist)")
    _args_run(r, "config for every stage, e.g. train.optim.epochs=1")


def _variables(items: list[str] | None) -> dict[str, str]:
    """--var NAME=PATH ... -> {NAME: PATH}."""
    variables = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SpeechLSTMError(f"--var {item!r}: expected NAME=PATH")
        variables[name] = value
    return variables


def _recipe(args: argparse.Namespace) -> int:
    from .recipes import Runner, load_recipe, parse_assignments

    if args.max_steps is not None and args.max_steps <= 0:
        raise SpeechLSTMError("--max-steps must be positive")
    recipe = load_recipe(args.recipe, _variables(args.var), parse_assignments(args.set, "--set"))
    done = Runner(recipe, args.out_dir, device=args.device, progress=not args.quiet, max_steps=args.max_steps,
                  log=lambda m: print(m, file=sys.stderr, flush=True)).run(args.only)
    for name, files in done.items():
        print(f"{name}: {', '.join(map(str, files))}")
    return 0


def _args_cv(c: argparse.ArgumentParser) -> None:
    c.add_argument("recipe", type=Path, help="a recipe file, e.g. recipes/commands12.toml")
    c.add_argument("--folds", type=int, default=5, help="speaker folds (default 5)")
    c.add_argument("--out-dir", required=True, type=Path, help="fold-K/ per fold, and cv.json")
    c.add_argument("--var", action="append", metavar="NAME=PATH", help="an input of the recipe's [vars]")
    _args_run(c, "config for every stage, e.g. train.optim.epochs=30")


def _cv(args: argparse.Namespace) -> int:
    from .cv import cross_validate
    from .recipes import parse_assignments

    result = cross_validate(args.recipe, args.out_dir, args.folds, variables=_variables(args.var),
                            overrides=parse_assignments(args.set, "--set"), device=args.device,
                            progress=not args.quiet, max_steps=args.max_steps,
                            log=lambda m: print(m, file=sys.stderr, flush=True))
    for key, s in result["summary"].items():
        print(f"{key}: {s['mean']:.4f} +- {s['sd']:.4f} (min {s['min']:.4f}, max {s['max']:.4f}, {s['n']} runs)")
    print(f"-> {args.out_dir / 'cv.json'}")
    return 0


def _args_pretrain(pt: argparse.ArgumentParser) -> None:
    pt.add_argument("corpus", help="root of speaker/chapter/*.flac with *.trans.txt transcripts")
    pt.add_argument("--aligned", required=True, type=Path,
                    help="what `speechlstm corpus CORPUS --out DIR` wrote (DIR or DIR/alignments.jsonl)")
    pt.add_argument("--out", required=True, type=Path, help="encoder file to write (for train --init-from)")
    pt.add_argument("--noise", metavar="DIR", help="background noise .wav files mixed in (e.g. _background_noise_)")
    pt.add_argument("--epochs", type=int)
    pt.add_argument("--seed", type=int)
    pt.add_argument("--resume", action="store_true", help="continue from <out>.train-state.pt")
    _args_run(pt, "pretrain.*, model.* or features.* fields (the classifier must use the same model/features)")


def _pretrain(args: argparse.Namespace) -> int:
    from .config import FeatureConfig, ModelConfig, from_dict
    from .pretrain import PretrainConfig, pretrain

    sections = _sections(args, {"epochs": ("pretrain", "optim", "epochs"), "seed": ("pretrain", "optim", "seed")})
    pretrain(args.corpus, args.aligned, args.out, from_dict(PretrainConfig, sections.get("pretrain")),
             from_dict(FeatureConfig, sections.get("features")), from_dict(ModelConfig, sections.get("model")),
             noise_dir=args.noise, device=args.device, resume=args.resume, progress=not args.quiet,
             max_steps=args.max_steps)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from .labels import WORDS35
    from .synth import EXTRA_UNKNOWN, synthesize

    texts = tuple(args.words) if args.words else WORDS35 + (() if args.no_extra_unknown else EXTRA_UNKNOWN)
    counts = synthesize(args.out, texts, per_word=args.per_word,
                        engines=args.engines.split(",") if args.engines else None, seed=args.seed,
                        jobs=args.jobs, progress=not args.quiet)
    print(f"{args.out}: {counts['rendered']} rendered, {counts['cached']} cached, {counts['failed']} failed")
    return 1 if counts["failed"] and not (counts["rendered"] + counts["cached"]) else 0


def _predict(args: argparse.Namespace) -> int:
    from .infer import Recognizer

    rec = Recognizer.from_checkpoint(args.checkpoint, device=args.device, runtime=args.runtime, int8=args.int8,
                                     words=args.words)
    if args.verbose:
        print(f"model {rec.checkpoint.source}: {rec.runtime}", file=sys.stderr)
    failed = 0
    for path in args.files:
        try:
            pred = rec.predict_file(path, top_k=args.top_k)
        except SpeechLSTMError as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": path, "error": str(e)}), flush=True)
            continue
        if args.json:
            print(json.dumps({"file": path, **pred.to_dict()}), flush=True)
        else:
            ranked = "  ".join(f"{label} {p:.3f}" for label, p in pred.top)
            print(f"{path}\t{ranked}", flush=True)
    return 1 if failed else 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, find_items, table, write_report
    from .infer import Recognizer

    rec = Recognizer.from_checkpoint(args.checkpoint, device=args.device, runtime=args.runtime, int8=args.int8)
    items = find_items(args.data, args.split)
    report = evaluate(rec, items, batch_size=args.batch_size, progress=not args.quiet)
    d = report.data
    lo, hi = d["accuracy_ci95"]
    print(table(d))
    print(f"accuracy {100 * d['accuracy']:.2f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%) on {d['evaluated']} "
          f"clips ({d['layout']} layout, {d['backend']}); ECE {d['ece']:.3f}; {len(d['unreadable'])} unreadable"
          + (f"; out-of-vocabulary -> _unknown_ {100 * d['oov_to_unknown']:.1f}%" if "oov_to_unknown" in d else ""))
    if args.out:
        print(f"report written to {write_report(report, args.out)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .export import export_model

    out = export_model(load_checkpoint(args.checkpoint), args.out, args.format, int8=args.int8)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {args.format}{', int8' if args.int8 else ''}); "
          f"input 'waveform' (batch, samples) float32, outputs 'logits' and 'mfcc'")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import bench_training, format_table, format_training, run_bench

    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    if args.train:
        result = bench_training(args.train, args.device, steps=args.train_steps, log=log)
        print(json.dumps(result, indent=1) if args.json else format_training(result))
        return 0
    result = run_bench(args.checkpoint, args.device, quick=args.quick, log=log)
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import check, report

    text, ok = report(check(runtime=not args.no_runtime))
    print(text)
    return 0 if ok else 1


def _make_stream(args: argparse.Namespace) -> int:
    import soundfile as sf

    from .stream_make import SAMPLE_RATE, make_stream, write_truth

    if args.data is None and not args.talk_only:
        raise DataError("make-stream needs --data (or --talk-only with --talk)")
    audio, events = make_stream(args.data, args.split, args.minutes, args.seed, talk_dir=args.talk,
                                talk_half=args.talk_half, talk_volume=args.talk_volume,
                                talk_only=args.talk_only, talk_with_commands=args.talk_with_commands, progress=True)
    sf.write(args.out_wav, audio, SAMPLE_RATE, subtype="PCM_16")
    write_truth(events, args.out_csv)
    print(f"wrote {len(audio) / SAMPLE_RATE:.0f} s with {len(events)} spoken clips to {args.out_wav}, "
          f"ground truth to {args.out_csv}")
    return 0


def _stream_overrides(args: argparse.Namespace) -> dict:
    """The rule's fields given on the command line (the rest come from the checkpoint)."""
    names = ("threshold", "hop_ms", "suppression_ms", "average_window_ms", "lookahead_ms", "max_word_ms")
    out = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.no_isolation:
        if args.max_word_ms is not None:
            raise ConfigError("give --max-word-ms or --no-isolation, not both")
        out["max_word_ms"] = None
    return out


def _streamer(args: argparse.Namespace, input_rate: int | None = None):
    from .infer import Recognizer
    from .stream import StreamingRecognizer

    rec = Recognizer.from_checkpoint(args.checkpoint, device=args.model_device, runtime=args.runtime,
                                     words=getattr(args, "words", None))
    return StreamingRecognizer(rec, input_rate=input_rate, **_stream_overrides(args))


def _recordings(args: argparse.Namespace, streamer):
    """Run the model once over every recording given: (command recordings, speech-only ones)."""
    from .stream_eval import record_files

    return record_files(streamer, args.audio, args.labels, args.speech_audio, progress=not args.quiet)


def _evaluate_stream(args: argparse.Namespace) -> int:
    from .stream_eval import evaluate, sweep

    streamer = _streamer(args)
    recs, speech = _recordings(args, streamer)
    labels = streamer.recognizer.labels
    result = evaluate(recs, speech, labels, streamer.config, args.tolerance_ms)
    result["rule"] = dataclasses.asdict(streamer.config)
    if args.sweep:
        rows = sweep(recs, speech, labels, streamer.config)
        result["sweep"] = rows
        if args.out:
            _write_sweep(rows, args.out)
    if args.json:
        print(json.dumps(result))
        return 0
    for key, value in result.items():
        if key != "sweep":
            print(f"{key:>34}: {value}")
    if args.sweep:
        print(_sweep_table(result["sweep"]))
        if args.out:
            print(f"wrote {args.out}/sweep.csv, sweep.md and sweep.png")
    return 0


def _sweep_table(rows: list[dict]) -> str:
    from .stream_eval import SWEEP_COLUMNS

    cols = [c for c in SWEEP_COLUMNS if any(c in r for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _write_sweep(rows: list[dict], out: Path) -> None:
    import csv

    from .plots import plot_stream_sweep
    from .stream_eval import SWEEP_COLUMNS

    out.mkdir(parents=True, exist_ok=True)
    cols = [c for c in SWEEP_COLUMNS if any(c in r for r in rows)]
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    (out / "sweep.md").write_text(_sweep_table(rows) + "\n")
    plot_stream_sweep(rows, out / "sweep.png")


def _calibrate_stream(args: argparse.Namespace) -> int:
    from .stream_eval import Limits, calibrate_file

    limits = Limits(args.max_wrong_pct, args.max_false_alarms_per_hour, args.max_delay_ms, args.false_alarm_weight,
                    args.max_correct_gap)
    result = calibrate_file(args.checkpoint, args.audio, args.labels,
                            args.speech_audio, args.out, limits, device=args.model_device, runtime=args.runtime,
                            overrides=_stream_overrides(args), progress=not args.quiet)
    print(json.dumps(result, indent=1))
    print(f"wrote the calibrated rule into {args.out}", file=sys.stderr)
    return 0


def _corpus(args: argparse.Namespace) -> int:
    from .align import align_corpus

    r = align_corpus(args.corpus, args.out, words=args.words, jobs=args.jobs, progress=not args.quiet)
    print(f"{r.utterances} utterances: {r.aligned} aligned now, {r.cached} from the cache; "
          f"{r.out_of_dictionary} skipped for words outside the dictionary, {r.failed} failed; "
          f"{r.clips} word clips in {args.out} (manifest.csv, alignments.jsonl)")
    if r.unknown_words:
        top = sorted(r.unknown_words.items(), key=lambda kv: -kv[1])[:20]
        print("words outside the dictionary: " + ", ".join(f"{w} ({n})" for w, n in top))
    return 0


def _add_stream_options(p: argparse.ArgumentParser, device_flag: str = "--device") -> None:
    p.add_argument("--checkpoint",
                   help="checkpoint file (default: the shipped commands12 model)")
    p.add_argument("--threshold", type=float,
                   help="one threshold for every command (default: the checkpoint's calibrated ones)")
    p.add_argument("--hop-ms", type=float, help="how often the model runs (default: the checkpoint's, 100)")
    p.add_argument("--suppression-ms", type=float, help="no second detection this soon after a peak")
    p.add_argument("--average-window-ms", type=float, help="posterior smoothing window")
    p.add_argument("--lookahead-ms", type=float,
                   help="wait this long for a higher peak before reporting (0: fire at the first crossing)")
    p.add_argument("--max-word-ms", type=float,
                   help="report a command only when voice activity shows it said on its own: a speech "
                        "segment at most this long (default: the checkpoint's; shipped: 1200)")
    p.add_argument("--no-isolation", action="store_true",
                   help="report commands inside running speech too (no voice-activity check)")
    p.add_argument(device_flag, dest="model_device", default="cpu", help="torch device for the model")
    p.add_argument("--words", help="a words folder (speechlstm enroll): recognize its words too")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto", help=RUNTIME_HELP)


def _live(args: argparse.Namespace) -> int:
    from . import live

    if args.list_devices:
        print(live.list_devices())
        return 0

    def make_streamer(rate: int):
        return _streamer(args, input_rate=rate)

    if args.input:
        if args.save:
            raise ConfigError("--save records a device; with --input the recording already exists")
        stats = live.run_file(make_streamer, args.input, args.json, realtime=args.realtime)
    else:
        print("listening; Ctrl-C stops", file=sys.stderr, flush=True)
        stats = live.run_microphone(make_streamer, args.device, args.json, duration_s=args.duration_s,
                                    save=args.save)
    share = 100 * stats.cpu_seconds / max(stats.seconds, 1e-9)
    print(f"{stats.seconds:.1f} s of audio, {stats.detections} detections, {stats.model_runs} model runs, "
          f"{stats.gated_hops} gated hops, {stats.overflows} input overflows, {stats.dropped_blocks} dropped "
          f"blocks, CPU {share:.1f}% of real time", file=sys.stderr)
    return 0


def _enroll(args: argparse.Namespace) -> int:
    import time

    from .checkpoint import load_words
    from .enroll import FALSE_ACCEPT_RATE, Embedder, enroll, remove

    if args.list or args.remove:
        if args.clips or (args.list and args.remove):
            raise ConfigError("--list and --remove WORD take no clips, and not each other")
        if args.remove:
            remove(args.remove, args.words)
            print(f"removed {args.remove!r} from {args.words}")
        for name, w in sorted(load_words(args.words).words.items()):
            print(f"{name}\t{len(w.clips)} clips\tthreshold {w.threshold:.3f}\tenrolled {w.created}")
        return 0
    if not args.word or not args.clips:
        raise ConfigError("give a word and its recordings: speechlstm enroll WORD CLIP1 CLIP2 CLIP3 ...")
    t0 = time.perf_counter()
    rate = FALSE_ACCEPT_RATE if args.false_accept_rate is None else args.false_accept_rate
    entry = enroll(args.word, args.clips, args.words, embedder=Embedder.from_checkpoint(args.embedder),
                   false_accept_rate=rate)
    seconds = time.perf_counter() - t0
    print(f"enrolled {entry.name!r} from {len(entry.clips)} recordings in {seconds:.1f} s into {args.words} "
          f"(threshold {entry.threshold:.3f}; the recordings score {min(entry.scores):.2f} to "
          f"{max(entry.scores):.2f}); use it: --words {args.words}")
    return 0


def _make_embedder(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint, save_checkpoint
    from .enroll import add_negatives

    skip = [w for w in (args.skip or "").split(",") if w]
    ckpt = add_negatives(load_checkpoint(args.checkpoint), args.clips, args.talk, words=args.word_clips,
                         talk=args.talk_windows, skip=skip, seed=args.seed, progress=not args.quiet)
    save_checkpoint(ckpt, args.out)
    print(f"{args.out}: {ckpt.enrollment['negatives'].shape[0]} negatives ({'; '.join(ckpt.enrollment['sources'])})")
    return 0


def _download(args: argparse.Namespace) -> int:
    from .download import download

    out = download(args.dest, version=args.version, url=args.url, sha256=args.sha256,
                   progress=not args.quiet)
    print(f"Speech Commands v{args.version} is in {out}")
    return 0


def _args_synth(y: argparse.ArgumentParser) -> None:
    y.add_argument("--out", required=True, help="output tree (word/*.wav); existing renders are reused")
    y.add_argument("--per-word", type=int, default=60, help="renders per word or phrase")
    y.add_argument("--words", nargs="+", help="texts to render (default: the 35 words + extra unknowns)")
    y.add_argument("--no-extra-unknown", action="store_true", help="only the dataset's 35 words")
    y.add_argument("--engines", help="comma list of espeak-ng,flite,festival (default: all installed)")
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--jobs", type=int, help="parallel renders (default: CPU count)")
    y.add_argument("--quiet", action="store_true")

def _args_predict(r: argparse.ArgumentParser) -> None:
    r.add_argument("files", nargs="+")
    r.add_argument("--checkpoint", help="checkpoint file (default: the shipped commands12 model)")
    r.add_argument("--top-k", type=int, default=3)
    r.add_argument("--json", action="store_true", help="one JSON object per line")
    r.add_argument("--device", default="auto")
    r.add_argument("--int8", action="store_true", help="PyTorch dynamic int8 (the same as --runtime int8)")
    r.add_argument("--runtime", choices=RUNTIMES, default="auto", help=RUNTIME_HELP)
    r.add_argument("--verbose", action="store_true", help="also say how the model runs (on stderr)")
    r.add_argument("--words", help="a words folder (speechlstm enroll): recognize its words too")

def _args_evaluate(e: argparse.ArgumentParser) -> None:
    e.add_argument("--checkpoint", help="checkpoint file (default: the shipped commands12 model)")
    e.add_argument("--data", required=True,
                   help="Speech Commands root, canonical test-set folder, or CSV manifest (path,label)")
    e.add_argument("--split", default="test", choices=["test", "validation"],
                   help="which list of a Speech Commands root to evaluate")
    e.add_argument("--out", type=Path, help="folder for report.json, report.md and the PNGs")
    e.add_argument("--batch-size", type=int, default=128)
    e.add_argument("--device", default="auto")
    e.add_argument("--int8", action="store_true", help="PyTorch dynamic int8 (the same as --runtime int8)")
    e.add_argument("--runtime", choices=RUNTIMES, default="auto", help=RUNTIME_HELP)
    e.add_argument("--quiet", action="store_true")

def _args_export(x: argparse.ArgumentParser) -> None:
    x.add_argument("out", type=Path, help="file to write, e.g. commands12.onnx")
    x.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    x.add_argument("--int8", action="store_true", help="int8 weights (dynamic quantization)")
    x.add_argument("--checkpoint", help="checkpoint file (default: the shipped commands12 model)")

def _args_bench(b: argparse.ArgumentParser) -> None:
    b.add_argument("--checkpoint", help="checkpoint file (default: the shipped commands12 model)")
    b.add_argument("--device", default="cpu", help="cpu or cuda")
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.add_argument("--quick", action="store_true", help="shorter timing loops (noisier)")
    b.add_argument("--train", metavar="DATA_DIR",
                   help="instead: profile training steps on this dataset (time per stage, clips/s)")
    b.add_argument("--train-steps", type=int, default=40, help="training steps to time with --train")

def _args_doctor(dr: argparse.ArgumentParser) -> None:
    dr.add_argument("--no-runtime", action="store_true", help="skip building the default runtime (an export)")

def _args_make_stream(m: argparse.ArgumentParser) -> None:
    m.add_argument("--data", help="Speech Commands root (the command clips and background noise)")
    m.add_argument("--split", default="test", choices=["train", "validation", "test"])
    m.add_argument("--minutes", type=float, default=10.0)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--talk", metavar="DIR", help="read speech in the LibriSpeech layout between the clips")
    m.add_argument("--talk-half", default="all", choices=["all", "validation", "test"],
                   help="only the talkers of one half of the corpus's speakers (a fixed hash split)")
    m.add_argument("--talk-volume", type=float, default=0.5, help="gain on the read speech")
    m.add_argument("--talk-only", action="store_true",
                   help="read speech (and noise) alone, no commands: every detection is a false alarm")
    m.add_argument("--talk-with-commands", action="store_true",
                   help="keep read-speech utterances whose transcript holds a command word (left out by "
                        "default: a reader's 'Yes.' is a real yes, not a false alarm)")
    m.add_argument("out_wav", type=Path)
    m.add_argument("out_csv", type=Path)

def _args_recordings(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio", action="append", default=[], type=Path, required=True,
                   help="a recording with commands (repeatable)")
    p.add_argument("--labels", action="append", default=[], type=Path, required=True,
                   help="its ground truth CSV: label,time_ms[,end_ms] (one per --audio)")
    p.add_argument("--speech-audio", action="append", default=[], type=Path,
                   help="command-free speech: every detection is a false alarm (repeatable)")
    p.add_argument("--quiet", action="store_true")

def _args_evaluate_stream(es: argparse.ArgumentParser) -> None:
    _add_stream_options(es)
    _args_recordings(es)
    es.add_argument("--tolerance-ms", type=float, default=500.0)
    es.add_argument("--sweep", action="store_true",
                    help="also: correct / missed / wrong and false alarms per hour over thresholds")
    es.add_argument("--out", type=Path, help="with --sweep: write sweep.csv, sweep.md and sweep.png here")
    es.add_argument("--json", action="store_true")

def _args_calibrate_stream(cs: argparse.ArgumentParser) -> None:
    _add_stream_options(cs)
    _args_recordings(cs)
    cs.add_argument("--max-wrong-pct", type=float, default=1.5, help="wrong detections, %% of commands")
    cs.add_argument("--max-false-alarms-per-hour", type=float, default=1.5,
                    help="on the --speech-audio recordings (without them: between the commands)")
    cs.add_argument("--max-delay-ms", type=float, default=400.0, help="median, end of word to report")
    cs.add_argument("--false-alarm-weight", type=float, default=0.25,
                    help="when no setting meets the limits: how many missed commands in a hundred one false "
                         "alarm an hour costs")
    cs.add_argument("--max-correct-gap", type=float, default=2.0,
                    help="correct detections at most this many points below the model's one-clip accuracy on "
                         "the same commands")
    cs.add_argument("--out", type=Path, required=True, help="checkpoint to write (the input's weights + the rule)")

def _args_corpus(co: argparse.ArgumentParser) -> None:
    co.add_argument("corpus", help="root of speaker/chapter/*.flac with *.trans.txt transcripts")
    co.add_argument("--out", required=True, type=Path, help="word clips in the Speech Commands layout, and the cache")
    co.add_argument("--words", default="all",
                    help="all (but homophones of a command: know, write, ...), commands, or a comma-separated list")
    co.add_argument("--jobs", type=int, help="parallel alignment processes (default: every core)")
    co.add_argument("--quiet", action="store_true")

def _args_wordset(ws: argparse.ArgumentParser) -> None:
    ws.add_argument("out", type=Path, help="the folder to write (new or empty): word/ links, lists, wordset.json")
    ws.add_argument("--commands", action="append", metavar="DIR",
                    help="Speech Commands clips (word/<speaker>_nohash_<n>.wav) of more speakers (repeatable; "
                         "speakers of the dataset's testing split left out)")
    ws.add_argument("--corpus", action="append", metavar="DIR",
                    help="word clips of `speechlstm corpus` (repeatable)")
    ws.add_argument("--exclude-speakers-of", action="append", metavar="DIR",
                    help="leave out every speaker of this Speech Commands tree (the commands model's own data)")
    ws.add_argument("--min-clips", type=int, default=25, help="a read word's clips to be a class (default 25)")
    ws.add_argument("--noise", metavar="DIR", help="background noise (default: the first --commands tree's)")


def _wordset(args: argparse.Namespace) -> int:
    from .wordset import build_wordset

    r = build_wordset(args.out, tuple(args.commands or ()), tuple(args.corpus or ()), min_clips=args.min_clips,
                      exclude_speakers_of=tuple(args.exclude_speakers_of or ()), noise_dir=args.noise)
    print(f"{args.out}: {r.words} words, {r.training} training and {r.validation} validation clips" +
          "".join(f"; left out {n}: {why}" for why, n in r.left_out.items()))
    return 0


def _args_live(lv: argparse.ArgumentParser) -> None:
    _add_stream_options(lv, device_flag="--model-device")
    lv.add_argument("--device", help="input device name or index (see --list-devices)")
    lv.add_argument("--list-devices", action="store_true")
    lv.add_argument("--json", action="store_true", help="JSON lines instead of '[mm:ss.mmm] word score'")
    lv.add_argument("--input", help="run the same loop on a recording instead of a device")
    lv.add_argument("--realtime", action="store_true", help="with --input: pace it like a live stream")
    lv.add_argument("--duration-s", type=float, help="stop listening after this many seconds")
    lv.add_argument("--save", metavar="FILE", help="also record what the device hears (WAV/FLAC, float); "
                    "--input FILE replays it with the same detections")

def _args_enroll(en: argparse.ArgumentParser) -> None:
    en.add_argument("word", nargs="?", help="the word to enrol (a word enrolled before is replaced)")
    en.add_argument("clips", nargs="*", help="3 to 10 recordings of it, one word each (any format and rate)")
    en.add_argument("--words", "--out", dest="words", default="words", help="the words folder (default: words/)")
    en.add_argument("--remove", metavar="WORD", help="remove an enrolled word")
    en.add_argument("--list", action="store_true", help="list the enrolled words")
    en.add_argument("--embedder", help="embedding model (default: the shipped checkpoints/embedder.pt)")
    en.add_argument("--false-accept-rate", type=float, metavar="SHARE",
                    help="how picky the word is: the share of other words and read speech its threshold lets "
                    "through (default: speechlstm.enroll.FALSE_ACCEPT_RATE; lower: fewer false accepts, fewer "
                    "detections)")

def _args_make_embedder(m: argparse.ArgumentParser) -> None:
    m.add_argument("checkpoint", help="a trained classifier (recipes/embedder.toml) whose encoder embeds words")
    m.add_argument("--clips", action="append", required=True, metavar="DIR",
                   help="word/*.wav folders of other words (repeatable; their validation/testing lists are skipped)")
    m.add_argument("--talk", required=True, metavar="DIR", help="read speech (*.flac/*.wav under it)")
    m.add_argument("--skip", help="comma-separated words left out of the negatives (e.g. a benchmark's)")
    m.add_argument("--word-clips", type=int, default=1000, help="word clips drawn (default 1000)")
    m.add_argument("--talk-windows", type=int, default=1000, help="1 s windows of read speech (default 1000)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", required=True, help="the embedding model to write (checkpoints/embedder.pt)")
    m.add_argument("--quiet", action="store_true")

def _args_download(d: argparse.ArgumentParser) -> None:
    d.add_argument("dest", type=Path)
    d.add_argument("--version", default="0.02", choices=["0.01", "0.02"])
    d.add_argument("--url", help="another location of the tarball (mirror or file://)")
    d.add_argument("--sha256", help="expected checksum of --url")
    d.add_argument("--quiet", action="store_true")


COMMANDS = (  # name, help, its arguments, what it runs
    ("train", "train a model on a Speech Commands directory (one run; a whole recipe: `recipe`)", _args_train,
     _train),
    ("recipe", "run a recipe file (recipes/*.toml): every stage that makes a model", _args_recipe, _recipe),
    ("cv", "speaker k-fold cross-validation of a recipe: validation figures over every dev speaker", _args_cv, _cv),
    ("pretrain", "phonetic pretraining of the encoder on force-aligned read speech", _args_pretrain, _pretrain),
    ("synth", "render synthetic training speech with offline TTS engines", _args_synth, _synth),
    ("predict", "recognize the command in audio files", _args_predict, _predict),
    ("evaluate", "accuracy report on a labelled data set", _args_evaluate, _evaluate),
    ("export", "write an ONNX or TorchScript model (waveform in, MFCC inside)", _args_export, _export),
    ("bench", "latency, throughput, MFCC and streaming cost, memory", _args_bench, _bench),
    ("doctor", "check the install: the torch/torchaudio pair, the front end, the runtime", _args_doctor, _doctor),
    ("make-stream", "build a long test recording with ground truth", _args_make_stream, _make_stream),
    ("evaluate-stream", "score the streaming recognizer on long recordings", _args_evaluate_stream,
     _evaluate_stream),
    ("calibrate-stream", "choose the streaming rule (per-command thresholds) on validation recordings",
     _args_calibrate_stream, _calibrate_stream),
    ("corpus", "force-align a LibriSpeech-layout corpus (PocketSphinx) into word clips", _args_corpus, _corpus),
    ("wordset", "link more speakers' commands and aligned read words into one folder of many words "
     "(word-level pretraining)", _args_wordset, _wordset),
    ("live", "recognize commands from the microphone (or a recording)", _args_live, _live),
    ("download", "download and extract the Speech Commands dataset", _args_download, _download),
    ("make-embedder", "store other words' and read speech's embeddings in a checkpoint: an enrolment model",
     _args_make_embedder, _make_embedder),
    ("enroll", "add your own word from a few recordings (or --remove / --list them)", _args_enroll, _enroll),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="speechlstm", description="Speech command recognition with a BiLSTM.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_, add_arguments, func in COMMANDS:
        command = sub.add_parser(name, help=help_)
        add_arguments(command)
        command.set_defaults(func=func)
    sub.add_parser("serve", help="start the web demo (same as python app.py; see serve --help)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the web demo has its own options: python app.py --help
        from .webui import main as serve

        serve(argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpeechLSTMError as e:
        print(f"speechlstm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
