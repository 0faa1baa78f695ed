"""`speechlstm bench`: speed and memory of every way to run a checkpoint.

Single-clip latency is batch 1 on one thread with MFCC included (waveform in,
logits out), as median and p95 of many runs; throughput uses every thread.
Quote medians and ratios: shared machines are noisy.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .infer import Recognizer
from .model import resolve_device

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def timings(fn: Callable[[], object], min_runs: int = 50, min_s: float = 1.0, warmup: int = 10) -> np.ndarray:
    """Seconds per call: at least ``min_runs`` calls and ``min_s`` seconds, after ``warmup``."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    start = time.perf_counter()
    while len(out) < min_runs or time.perf_counter() - start < min_s:
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return np.asarray(out)


def _stats_ms(t: np.ndarray) -> dict[str, float]:
    return {"median_ms": round(1e3 * float(np.median(t)), 4), "p95_ms": round(1e3 * float(np.percentile(t, 95)), 4),
            "runs": int(len(t))}


def bench_clips(rec: Recognizer, n: int = 16) -> np.ndarray:
    """Real speech where we have it (the shipped examples), else seeded noise bursts: (n, S)."""
    files = sorted(EXAMPLES.glob("*.wav"))
    if files:
        clips = [rec.prepare(f)[0] for f in files]
    else:
        rng = np.random.default_rng(0)
        clips = [0.1 * rng.standard_normal(rec.clip_samples).astype(np.float32)]
    return np.stack([clips[i % len(clips)] for i in range(n)]).astype(np.float32)


class _Threads:
    """torch's intra-op thread count, set for a block and restored after."""

    def __init__(self, n: int):
        self.n, self.old = n, torch.get_num_threads()

    def __enter__(self):
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


def run_bench(checkpoint: str | os.PathLike | None = None, device: str = "cpu", batch_sizes=(1, 16, 64, 256),
              quick: bool = False, onnx: bool = True, log: Callable[[str], None] = lambda s: None) -> dict:
    dev = resolve_device(device)
    min_s = 0.3 if quick else 1.5
    ckpt = load_checkpoint(checkpoint)
    results: dict = {"device": str(dev), "torch": str(torch.__version__), "threads": torch.get_num_threads(),
                     "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                     "checkpoint": str(ckpt.source), "latency": {}, "throughput": {}}
    fp32 = Recognizer(ckpt, str(dev), runtime="eager")
    results["parameters"] = fp32.parameters
    results["checkpoint_mb"] = round(ckpt.source.stat().st_size / 1e6, 2)
    clips = bench_clips(fp32, max(batch_sizes))

    # --- PyTorch first (fp32, int8), so that the peak memory of serving is read before any export
    runners: dict[str, Recognizer] = {"fp32": fp32}  # single clip: batch 1, one thread, MFCC included
    if dev.type == "cpu":
        runners["int8"] = Recognizer(ckpt, "cpu", int8=True)
    _measure(runners, runners, clips, batch_sizes, min_s, results, log)
    results["mfcc"] = _bench_mfcc(fp32, clips[:1], min_s)  # torchaudio front end vs librosa, one thread
    results["stream_hop"] = _bench_stream(fp32, clips, min_s)  # ring buffer + model + smoothing, one thread
    if dev.type == "cuda":
        results["cuda"] = _bench_cuda(ckpt, dev, clips, min_s, log)
    results["peak_rss_mb"] = _peak_rss_mb()  # everything above: what serving this model takes
    # --- ONNX Runtime (the exporter itself is memory-hungry: its peak is not counted above)
    if dev.type == "cpu" and onnx:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                from .export import export_model

                single, batched = {}, {}
                for name, int8 in (("onnx", False), ("onnx_int8", True)):
                    log(f"exporting {name} ...")
                    path = export_model(ckpt, Path(tmp) / f"{name}.onnx", "onnx", int8=int8)
                    single[name] = Recognizer.from_checkpoint(path, "cpu", threads=1)
                    batched[name] = Recognizer.from_checkpoint(path, "cpu", threads=torch.get_num_threads())
                    results[f"{name}_mb"] = round(path.stat().st_size / 1e6, 2)
                _measure(single, batched, clips, batch_sizes, min_s, results, log)
            except ImportError as e:
                results["onnx"] = f"skipped: {e}"
            except Exception as e:  # an export problem must not hide the other figures
                results["onnx"] = f"skipped: {type(e).__name__}: {e}"
    return results


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _measure(single: dict[str, Recognizer], batched: dict[str, Recognizer], clips: np.ndarray, batch_sizes,
             min_s: float, results: dict, log: Callable[[str], None]) -> None:
    """Single-clip latency (one thread) and throughput (every thread) of each runner."""
    with _Threads(1):
        for name, rec in single.items():
            log(f"latency {name} ...")
            results["latency"][name] = _stats_ms(timings(lambda: rec.logits(clips[:1]), min_s=min_s))
    for name, rec in batched.items():
        for bs in batch_sizes:
            log(f"throughput {name} batch {bs} ...")
            t = timings(lambda: rec.logits(clips[:bs]), min_runs=5, min_s=min_s, warmup=2)
            results["throughput"][f"{name}_b{bs}"] = round(bs / float(np.median(t)), 1)


def _bench_mfcc(rec: Recognizer, one: np.ndarray, min_s: float) -> dict:
    import librosa

    f = rec.checkpoint.features
    model = rec.checkpoint.build_model()
    x = torch.from_numpy(one)
    with _Threads(1), torch.inference_mode():
        ta = timings(lambda: model.features(x), min_s=min_s)

    def lib():
        return librosa.feature.mfcc(y=one[0], sr=f.sample_rate, n_mfcc=f.n_mfcc, n_fft=f.n_fft,
                                    win_length=f.win_samples, hop_length=f.hop_samples, n_mels=f.n_mels,
                                    fmin=f.f_min, fmax=f.f_max, htk=True, center=True)

    lr = timings(lib, min_s=min_s)
    out = {"torchaudio": _stats_ms(ta), "librosa": _stats_ms(lr)}
    out["librosa_over_torchaudio"] = round(float(np.median(lr) / np.median(ta)), 2)
    return out


def _bench_stream(rec: Recognizer, clips: np.ndarray, min_s: float) -> dict:
    from .stream import StreamingRecognizer

    audio = np.concatenate(list(clips[:6]))
    with _Threads(1):
        s = StreamingRecognizer(rec, gate_db=None)  # no energy gate: every hop runs the model
        hop = s.hop_samples
        chunks = [audio[i : i + hop] for i in range(0, len(audio) - hop + 1, hop)]
        it = iter(range(10**9))
        t = timings(lambda: s.push(chunks[next(it) % len(chunks)]), min_s=min_s)
    hop_ms = 1000 * hop / rec.sample_rate
    return {**_stats_ms(t), "hop_ms": hop_ms, "real_time_share": round(float(np.median(t)) * 1000 / hop_ms, 4)}


def _bench_cuda(ckpt, dev: torch.device, clips: np.ndarray, min_s: float, log) -> dict:
    import torch.nn.functional as F

    model = ckpt.build_model().to(dev)
    out: dict = {"gpu": torch.cuda.get_device_name(dev)}
    for bs in (1024, 8192, 32768):
        x = torch.from_numpy(np.resize(clips, (bs, clips.shape[1]))).to(dev)  # waveforms already on the GPU
        for amp in (False, True):
            log(f"cuda throughput batch {bs} autocast={amp} ...")

            def step():
                with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                    model(x)
                torch.cuda.synchronize(dev)

            t = timings(step, min_runs=10, min_s=min_s, warmup=3)
            out[f"clips_per_s_b{bs}{'_autocast' if amp else ''}"] = round(bs / float(np.median(t)), 1)
    host = torch.from_numpy(np.resize(clips, (8192, clips.shape[1]))).pin_memory()  # from host memory
    log("cuda throughput batch 8192 autocast=True, copy from pinned host memory included ...")

    def from_host():
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            model(host.to(dev, non_blocking=True)).float().cpu()

    t = timings(from_host, min_runs=10, min_s=min_s, warmup=3)
    out["clips_per_s_b8192_autocast_from_host"] = round(8192 / float(np.median(t)), 1)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.from_numpy(np.resize(clips, (256, clips.shape[1]))).to(dev)
    y = torch.zeros(256, dtype=torch.long, device=dev)

    def train_step():
        with torch.autocast("cuda", dtype=torch.float16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        torch.cuda.synchronize(dev)

    log("cuda training step ...")
    out["train_step_b256"] = _stats_ms(timings(train_step, min_runs=20, min_s=min_s, warmup=3))
    out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(dev) / 1e6, 1)
    return out


def bench_training(data_dir: str | os.PathLike, device: str = "cpu", steps: int = 40, batch_size: int = 64,
                   log: Callable[[str], None] = lambda s: None) -> dict:
    """Time ``steps`` steps of the shipped recipe's training loop, stage by stage
    (batch loading, waveform augmentation, MFCC, forward, backward, optimizer),
    after two warm-up steps. The clip cache is built first and not timed."""
    from .loop import OptimConfig, StageClock
    from .train import TrainConfig, train

    dev = resolve_device(device)
    clock = StageClock(dev)
    cfg = TrainConfig(optim=OptimConfig(epochs=1, batch_size=batch_size, warmup_epochs=0.0))
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):  # train's log lines
        log(f"timing {steps} training steps on {dev} ...")
        warm = StageClock(dev)
        train(data_dir, Path(tmp) / "warm.pt", cfg, device=device, progress=False, max_steps=2, clock=warm)
        train(data_dir, Path(tmp) / "timed.pt", cfg, device=device, progress=False, max_steps=steps, clock=clock)
    total = sum(clock.seconds.values())
    return {"device": str(dev), "torch": str(torch.__version__), "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "batch_size": batch_size, "steps": clock.steps,
            "clips": clock.clips, "clips_per_s": round(clock.clips / total, 1),
            "ms_per_step": round(1000 * total / max(1, clock.steps), 2),
            "stages": {k: {"ms_per_step": round(1000 * v / max(1, clock.steps), 2), "share": round(v / total, 4)}
                       for k, v in clock.seconds.items()}}


def format_training(r: dict) -> str:
    lines = [f"training steps on {r['device']} (torch {r['torch']}, {r['threads']} threads): batch {r['batch_size']}, "
             f"{r['steps']} steps, {r['clips_per_s']:,.0f} clips/s, {r['ms_per_step']:.1f} ms a step", ""]
    lines += [f"  {k:<38}{v['ms_per_step']:>9.2f} ms {100 * v['share']:>6.1f}%" for k, v in r["stages"].items()]
    return "\n".join(lines)


def format_table(r: dict) -> str:
    lines = [f"speechlstm bench  device {r['device']}  torch {r['torch']}  {r['cpu_count']} CPUs "
             f"({r['threads']} torch threads)",
             f"checkpoint {r['checkpoint']} ({r['checkpoint_mb']} MB, {r['parameters']:,} parameters)", "",
             "single clip (batch 1, 1 thread, waveform -> logits, MFCC included)",
             f"  {'runtime':<12}{'median ms':>11}{'p95 ms':>9}{'vs fp32':>9}"]
    base = r["latency"]["fp32"]["median_ms"]
    for name, s in r["latency"].items():
        lines.append(f"  {name:<12}{s['median_ms']:>11.3f}{s['p95_ms']:>9.3f}{base / s['median_ms']:>8.2f}x")
    if isinstance(r.get("onnx"), str):
        lines.append(f"  onnx: {r['onnx']}")
    lines.append("  default runtime on a CPU (Recognizer.from_checkpoint): onnx_int8, one clip a run")
    lines += ["", "throughput (all threads), clips/s"]
    lines += [f"  {k:<14}{v:>12,.0f}" for k, v in r["throughput"].items()]
    m = r["mfcc"]
    lines += ["", f"MFCC, one clip: torchaudio {m['torchaudio']['median_ms']:.3f} ms, librosa "
                  f"{m['librosa']['median_ms']:.3f} ms ({m['librosa_over_torchaudio']}x)"]
    s = r["stream_hop"]
    lines += [f"streaming hop ({s['hop_ms']:.0f} ms of audio): {s['median_ms']:.3f} ms median, "
              f"p95 {s['p95_ms']:.3f} ms = {100 * s['real_time_share']:.2f}% of real time"]
    if "cuda" in r:
        c = r["cuda"]
        lines += ["", f"CUDA ({c['gpu']}):"] + [f"  {k}: {v}" for k, v in c.items() if k != "gpu"]
    sizes = ", ".join(f"{k.removesuffix('_mb')} {v} MB" for k, v in r.items() if k.endswith("_mb") and k != "peak_rss_mb")
    lines += ["", f"files: {sizes}", f"peak RSS serving with PyTorch (fp32 + int8 loaded, batch up to "
                                     f"{max(int(k.rsplit('_b', 1)[1]) for k in r['throughput'])}): {r['peak_rss_mb']} MB"]
    return "\n".join(lines)
