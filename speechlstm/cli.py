"""`speechlstm` command line: train, predict, evaluate, download."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import SpeechLSTMError


def _train(args: argparse.Namespace) -> int:
    from .config import FeatureConfig, ModelConfig, TrainConfig
    from .train import train

    overrides = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "seed", "task")
                 if getattr(args, k) is not None}
    model = {k: getattr(args, k) for k in ("hidden_size", "num_layers") if getattr(args, k) is not None}
    if args.max_steps is not None and args.max_steps <= 0:
        raise SpeechLSTMError("--max-steps must be positive")
    train(args.data_dir, args.out, TrainConfig(**overrides), FeatureConfig(), ModelConfig(**model),
          device=args.device, resume=args.resume, cache_dir=args.cache_dir, progress=not args.quiet,
          max_steps=args.max_steps)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .infer import Recognizer

    rec = Recognizer.from_checkpoint(args.checkpoint, device=args.device)
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

    rec = Recognizer.from_checkpoint(args.checkpoint, device=args.device)
    items = find_items(args.data, args.split)
    report = evaluate(rec, items, batch_size=args.batch_size, progress=not args.quiet)
    d = report.data
    lo, hi = d["accuracy_ci95"]
    print(table(d))
    print(f"accuracy {100 * d['accuracy']:.2f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%) on {d['evaluated']} "
          f"clips ({d['layout']} layout); ECE {d['ece']:.3f}; {len(d['unreadable'])} unreadable")
    if args.out:
        print(f"report written to {write_report(report, args.out)}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from .download import download

    out = download(args.dest, version=args.version, url=args.url, sha256=args.sha256,
                   progress=not args.quiet)
    print(f"Speech Commands v{args.version} is in {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="speechlstm", description="Speech command recognition with a BiLSTM.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on a Speech Commands directory")
    t.add_argument("--data-dir", required=True, help="Speech Commands root (word folders, lists)")
    t.add_argument("--out", required=True, type=Path, help="checkpoint to write (best on validation)")
    t.add_argument("--task", choices=["commands12", "words35"])
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--hidden-size", type=int)
    t.add_argument("--num-layers", type=int)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    t.add_argument("--resume", action="store_true", help="continue from <out>.train-state.pt")
    t.add_argument("--cache-dir", help="where decoded clips are cached (default ~/.cache/speechlstm)")
    t.add_argument("--max-steps", type=int, help="cap optimizer steps per epoch (smoke runs)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=_train)

    r = sub.add_parser("predict", help="recognize the command in audio files")
    r.add_argument("files", nargs="+")
    r.add_argument("--checkpoint", help="checkpoint file (default: the shipped commands12 model)")
    r.add_argument("--top-k", type=int, default=3)
    r.add_argument("--json", action="store_true", help="one JSON object per line")
    r.add_argument("--device", default="auto")
    r.set_defaults(func=_predict)

    e = sub.add_parser("evaluate", help="accuracy report on a labelled data set")
    e.add_argument("--checkpoint", help="checkpoint file (default: the shipped commands12 model)")
    e.add_argument("--data", required=True,
                   help="Speech Commands root, canonical test-set folder, or CSV manifest (path,label)")
    e.add_argument("--split", default="test", choices=["test", "validation"],
                   help="which list of a Speech Commands root to evaluate")
    e.add_argument("--out", type=Path, help="folder for report.json, report.md and the PNGs")
    e.add_argument("--batch-size", type=int, default=128)
    e.add_argument("--device", default="auto")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=_evaluate)

    d = sub.add_parser("download", help="download and extract the Speech Commands dataset")
    d.add_argument("dest", type=Path)
    d.add_argument("--version", default="0.02", choices=["0.01", "0.02"])
    d.add_argument("--url", help="another location of the tarball (mirror or file://)")
    d.add_argument("--sha256", help="expected checksum of --url")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=_download)
    return p


def main(argv: list[str] | None = None) -> int:
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
