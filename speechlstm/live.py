"""Live microphone loop: sounddevice callback -> queue -> StreamingRecognizer
on a worker thread -> printed detections. The only module that imports
sounddevice, and only when a live command runs, so everything else works
where PortAudio is missing."""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, TextIO

import numpy as np

from .errors import SpeechLSTMError
from .stream import Detection, StreamingRecognizer


class DeviceError(SpeechLSTMError):
    """No usable audio input (PortAudio missing, device absent or busy)."""


def _sounddevice():
    try:
        import sounddevice as sd
    except OSError as e:  # the PortAudio shared library is not installed
        raise DeviceError(f"cannot use audio devices: {e} (install PortAudio, e.g. apt-get install "
                          "libportaudio2)") from None
    return sd


def list_devices() -> str:
    return str(_sounddevice().query_devices())


def portaudio_version() -> str:
    """PortAudio's version text; DeviceError where it is missing."""
    return _sounddevice().get_portaudio_version()[1]


def _device(device: str | None) -> int | str | None:
    if device is None:
        return None
    return int(device) if device.isdigit() else device


@dataclass
class LoopStats:
    seconds: float = 0.0  # audio processed
    detections: int = 0
    overflows: int = 0
    dropped_blocks: int = 0
    model_runs: int = 0
    gated_hops: int = 0
    cpu_seconds: float = 0.0  # process CPU time spent while running


def format_detection(d: Detection, as_json: bool) -> str:
    if as_json:
        return json.dumps(d.to_dict())
    minutes, ms = divmod(d.time_ms, 60_000)
    return f"[{int(minutes):02d}:{ms / 1000:06.3f}] {d.label} {d.score:.2f}"


def _feed(streamer: StreamingRecognizer, block: np.ndarray, emit: Callable[[Detection], None],
          stats: LoopStats, last: bool = False) -> None:
    """Push one block, emit what fires, count it: the step both loops share."""
    for det in streamer.push(block, last=last):
        stats.detections += 1
        emit(det)
    stats.seconds += len(block) / streamer.input_rate


def _finish(stats: LoopStats, streamer: StreamingRecognizer, cpu0: float) -> LoopStats:
    stats.cpu_seconds = time.process_time() - cpu0
    stats.model_runs, stats.gated_hops = streamer.model_runs, streamer.gated_hops
    return stats


def _printer(as_json: bool, out: TextIO) -> Callable[[Detection], None]:
    return lambda det: print(format_detection(det, as_json), file=out, flush=True)


def _consume(streamer: StreamingRecognizer, blocks: "queue.Queue[np.ndarray | None]",
             emit: Callable[[Detection], None], stats: LoopStats, sink=None) -> None:
    """Worker thread: push queued blocks through the recognizer (and into ``sink``,
    a soundfile opened for writing) until None arrives."""
    while (block := blocks.get()) is not None:
        if sink is not None:
            sink.write(block)
        _feed(streamer, block, emit, stats)


def _open_sink(path: str, rate: int):
    """A float32 audio file to record the session into: replaying it with
    ``run_file`` gives the same detections (the stream is a function of its samples)."""
    import soundfile as sf

    try:
        return sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="FLOAT")
    except (RuntimeError, TypeError, ValueError, OSError) as e:  # libsndfile: unknown format, unwritable path
        raise SpeechLSTMError(f"cannot record to {path}: {e} (use .wav or .flac)") from None


def _one_thread() -> None:
    """One clip every hop gains nothing from intra-op threads, and idle OpenMP
    workers spin between hops: at a 100 ms hop that costs more than the model."""
    import torch

    torch.set_num_threads(1)


def run_microphone(make_streamer: Callable[[int], StreamingRecognizer], device: str | None = None,
                   as_json: bool = False, out: TextIO = sys.stdout, duration_s: float | None = None,
                   block_ms: float = 100.0, save: str | None = None) -> LoopStats:
    """Listen on ``device`` at its native rate until Ctrl-C (or ``duration_s``);
    ``save``: also record what it hears to that file (WAV/FLAC, float, the device's rate)."""
    sd = _sounddevice()
    try:
        info = sd.query_devices(_device(device), "input")
    except (ValueError, sd.PortAudioError) as e:
        raise DeviceError(f"no input device {device!r}: {e}\navailable devices:\n{list_devices()}") from None
    rate = int(info["default_samplerate"])
    _one_thread()
    streamer = make_streamer(rate)
    blocks: queue.Queue = queue.Queue(maxsize=int(30_000 / block_ms))  # 30 s of audio at most
    stats = LoopStats()

    def callback(indata, frames, time_info, status):  # PortAudio's thread: copy and hand over
        if status.input_overflow:
            stats.overflows += 1
        try:
            blocks.put_nowait(indata[:, 0].copy())
        except queue.Full:
            stats.dropped_blocks += 1

    cpu0 = time.process_time()
    sink = _open_sink(save, rate) if save else None
    try:
        stream = sd.InputStream(samplerate=rate, channels=1, dtype="float32", device=_device(device),
                                blocksize=int(rate * block_ms / 1000), callback=callback)
    except (ValueError, sd.PortAudioError) as e:
        if sink is not None:
            sink.close()
        raise DeviceError(f"cannot open input device {device!r} (missing or busy?): {e}\n"
                          f"available devices:\n{list_devices()}") from None
    worker = threading.Thread(target=_consume, args=(streamer, blocks, _printer(as_json, out), stats, sink),
                              daemon=True)
    worker.start()
    started = time.monotonic()
    try:
        with stream:
            while duration_s is None or time.monotonic() - started < duration_s:
                time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        blocks.put(None)  # the stream is closed: the worker drains what is queued, then stops
        worker.join(timeout=5)
        if sink is not None:
            sink.close()
    return _finish(stats, streamer, cpu0)


def run_file(make_streamer: Callable[[int], StreamingRecognizer], path: str, as_json: bool = False,
             out: TextIO = sys.stdout, realtime: bool = False, block_ms: float = 100.0) -> LoopStats:
    """The same loop over a recording: as fast as possible, or at real-time pace."""
    from .audio import read_audio

    samples, rate = read_audio(path)
    _one_thread()
    streamer = make_streamer(rate)
    stats, emit = LoopStats(), _printer(as_json, out)
    block = max(1, int(rate * block_ms / 1000))
    cpu0, started = time.process_time(), time.monotonic()
    for i in range(0, len(samples), block):
        if realtime:
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
        _feed(streamer, samples[i : i + block], emit, stats, last=i + block >= len(samples))
    return _finish(stats, streamer, cpu0)
