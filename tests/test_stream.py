import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import EXAMPLES, SHIPPED, make_fake_dataset
from speechlstm import Recognizer, read_audio
from speechlstm.audio import resample
from speechlstm.stream import Detection, StreamingRecognizer
from speechlstm.stream_eval import score_stream
from speechlstm.stream_make import Event, make_stream, read_truth, write_truth

needs_model = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped checkpoint")
WORDS = ["yes", "no", "up", "left", "stop", "go"]


@pytest.fixture(scope="module")
def rec():
    return Recognizer.from_checkpoint(device="cpu")  # the model for continuous audio


def _commands_audio(noise: float, shift_ms: int = 0, zero_lead_ms: int = 0):
    """The example clips, 2 s apart from 1 s + ``shift_ms`` on, over white noise of RMS
    ``noise`` (0: digital silence), each clip's first ``zero_lead_ms`` zeroed:
    (audio, [(word, start_ms)])."""
    rng = np.random.default_rng(0)
    audio = noise * rng.standard_normal(2 * 16000 * (len(WORDS) + 1) + 16 * shift_ms).astype(np.float32)
    truth = []
    for i, word in enumerate(WORDS):
        x, _ = read_audio(next(EXAMPLES.glob(f"{word}_*.wav")), 16000)
        x[: 16 * zero_lead_ms] = 0.0
        at = 16000 + 2 * 16000 * i + 16 * shift_ms
        audio[at : at + len(x)] += x
        truth.append((word, 1000 * at / 16000))
    return audio, truth


@pytest.fixture(scope="module")
def spoken():
    """The example clips, 2 s apart, over low noise: (audio, [(word, start_ms)])."""
    return _commands_audio(noise=0.003)


def _run(streamer, audio, chunk):
    streamer.reset()
    out = []
    for i in range(0, len(audio), chunk):
        out += streamer.push(audio[i : i + chunk])
    return out


@needs_model
def test_each_command_fires_once_with_the_right_word(rec, spoken):
    audio, truth = spoken
    dets = _run(StreamingRecognizer(rec), audio, 1600)
    assert [d.label for d in dets] == [w for w, _ in truth]
    for d, (_, start_ms) in zip(dets, truth):
        assert start_ms < d.time_ms <= start_ms + 1600  # fires while or just after the word is heard


@needs_model
@pytest.mark.parametrize("chunk", [160, 512, 16000, 7919])
def test_chunk_size_invariance(rec, spoken, chunk):
    audio, _ = spoken
    ref = _run(StreamingRecognizer(rec), audio, 1600)
    got = _run(StreamingRecognizer(rec), audio, chunk)
    assert [(d.label, d.time_ms) for d in got] == [(d.label, d.time_ms) for d in ref]
    np.testing.assert_allclose([d.score for d in got], [d.score for d in ref], atol=1e-5)


@needs_model
@pytest.mark.parametrize("shift_ms", [0, 30, 50, 70])
def test_commands_after_digital_silence_come_out(rec, shift_ms):
    """A gated input (a noise gate, browser noise suppression, PulseAudio starting up) gives
    digital silence, not a noise floor, before each word: the example clips in exact zeros, their
    first 80 ms zeroed too, at several hop alignments. The features' dynamic-range floor keeps
    every word's score up; without it "left" fell under its threshold at some alignments."""
    audio, _ = _commands_audio(noise=0.0, shift_ms=shift_ms, zero_lead_ms=80)
    assert [d.label for d in _run(StreamingRecognizer(rec), audio, 1600)] == WORDS


@needs_model
def test_silence_is_gated_and_never_fires(rec):
    s = StreamingRecognizer(rec)
    assert s.push(np.zeros(5 * 16000, np.float32)) == []
    assert s.model_runs == 0 and s.gated_hops == 50 and s.time_ms == 5000


@needs_model
def test_browser_rate_input_is_resampled_in_the_stream(rec, spoken):
    audio, truth = spoken
    s = StreamingRecognizer(rec, input_rate=48000)
    x48 = resample(audio, 16000, 48000)
    dets = []
    for i in range(0, len(x48), 48000 // 2):  # half-second chunks as a browser sends them
        dets += s.push(x48[i : i + 24000])
    assert [d.label for d in dets] == [w for w, _ in truth]


def test_scorer_on_hand_made_truth():
    truth = [Event("yes", 1000), Event("no", 4000), Event("_unknown_", 7000), Event("up", 10000),
             Event("go", 13000)]
    dets = [Detection("yes", 0.9, 1700, 700),     # correct
            Detection("yes", 0.8, 2000, 1000),    # second firing on the same word: false positive
            Detection("off", 0.9, 4800, 3800),   # wrong word on "no"
            Detection("left", 0.9, 7500, 6500),  # fired on unknown speech: false positive
            Detection("up", 0.9, 11200, 10200),   # correct
            Detection("stop", 0.9, 16500, 15500)]  # in a quiet stretch: false alarm
    r = score_stream(dets, truth, duration_ms=3_600_000, tolerance_ms=500)  # "go" is missed
    assert r["commands"] == 4 and r["unknown_events"] == 1
    assert r["matched_pct"] == 75.0 and r["correct_pct"] == 50.0 and r["wrong_pct"] == 25.0
    assert r["false_positive_pct"] == 75.0 and r["false_positives_on_unknown_speech"] == 1
    quiet_hours = (3_600_000 - 4 * 1500) / 3.6e6
    assert r["false_alarms_per_hour"] == round(3 / quiet_hours, 2)


def test_make_stream_truth_round_trip_and_cli(tmp_path):
    root = make_fake_dataset(tmp_path / "sc", speakers=6)
    audio, events = make_stream(root, "train", minutes=0.5, seed=3)
    assert len(audio) == 30 * 16000 and 5 <= len(events) <= 12
    assert all(b.time_ms - a.time_ms >= 2500 for a, b in zip(events, events[1:]))
    write_truth(events, tmp_path / "gt.csv")
    assert read_truth(tmp_path / "gt.csv") == events
    again, _ = make_stream(root, "train", minutes=0.5, seed=3)
    np.testing.assert_array_equal(audio, again)  # reproducible from the seed
    wav, csv_ = tmp_path / "s.wav", tmp_path / "s.csv"
    done = subprocess.run([sys.executable, "-m", "speechlstm", "make-stream", "--data", str(root), "--split",
                           "train", "--minutes", "0.25", str(wav), str(csv_)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert wav.is_file() and len(read_truth(csv_)) >= 2
    if SHIPPED.exists():
        ev = subprocess.run([sys.executable, "-m", "speechlstm", "evaluate-stream", "--audio", str(wav),
                             "--labels", str(csv_), "--json", "--quiet"], capture_output=True, text=True,
                            timeout=300)
        assert ev.returncode == 0, ev.stderr
        result = json.loads(ev.stdout)
        assert {"matched_pct", "correct_pct", "wrong_pct", "false_positive_pct",
                "false_alarms_per_hour"} <= set(result)


@needs_model
def test_one_hour_stream_bounded_memory_and_steady_latency(rec):
    """An hour of audio (a command every 30 s over low noise), generated chunk by
    chunk, runs faster than real time with flat memory and steady per-hop cost."""
    import time
    import tracemalloc

    x, _ = read_audio(next(EXAMPLES.glob("stop_*.wav")), 16000)
    s = StreamingRecognizer(rec)
    rng = np.random.default_rng(0)
    chunk = 16000  # 1 s per push
    costs, fired = [], 0
    tracemalloc.start()
    started = time.perf_counter()
    for second in range(3600):
        block = 0.001 * rng.standard_normal(chunk).astype(np.float32)
        if second % 30 == 10:
            block[: len(x)] += x
        t = time.perf_counter()
        fired += len(s.push(block))
        costs.append(time.perf_counter() - t)
        if second == 300:
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    elapsed = time.perf_counter() - started
    assert elapsed < 3600 / 2, f"only {3600 / elapsed:.1f}x real time"  # keeps up, with room (speed: bench)
    assert fired == 120 and s.time_ms == 3_600_000
    assert peak - base < 2 * 2**20, f"python memory grew {(peak - base) / 2**20:.1f} MB"
    busy = [c for i, c in enumerate(costs) if i % 30 == 10]  # seconds with speech
    first, last = np.median(busy[:20]), np.median(busy[-20:])
    assert last < 3 * first + 0.005, (first, last)
