"""The streaming decision rule (PeakPicker), replays of recorded posteriors,
threshold sweeps and calibration, and the rule saved in the checkpoint."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import EXAMPLES, SHIPPED
from speechlstm import Recognizer, read_audio
from speechlstm.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, save_checkpoint
from speechlstm.config import StreamConfig
from speechlstm.errors import ConfigError
from speechlstm.stream import PeakPicker, StreamingRecognizer
from speechlstm.stream_eval import Limits, Recording, calibrate, evaluate, record, replay, score_stream, sweep
from speechlstm.stream_make import Event

LABELS = ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
needs_model = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped checkpoint")


def _probs(scores: dict[str, float]) -> np.ndarray:
    p = np.zeros(len(LABELS), np.float32)
    for name, v in scores.items():
        p[LABELS.index(name)] = v
    p[0] += 1 - p.sum()
    return p


def _run(picker, frames, hop_ms=100.0):
    out = []
    for i, scores in enumerate(frames):
        det = picker.step((i + 1) * hop_ms, _probs(scores))
        if det is not None:
            out.append(det)
    det = picker.flush(len(frames) * hop_ms)
    return out + ([det] if det else [])


def test_peak_rule_fires_once_at_the_best_window_not_the_first_crossing():
    # a word sliding through: a partial view says "no" first, the centred view says "go"
    frames = [{}, {"no": 0.75}, {"go": 0.8}, {"go": 0.95}, {"go": 0.9}, {"go": 0.85}, {"go": 0.6}, {}, {}, {}]
    cfg = StreamConfig(average_window_ms=0, lookahead_ms=300, threshold=0.7)
    dets = _run(PeakPicker(LABELS, cfg), frames)
    assert [(d.label, d.time_ms, d.fired_ms) for d in dets] == [("go", 400.0, 700.0)]
    assert dets[0].score == pytest.approx(0.95)
    # the old rule (no look-ahead) fires on the first crossing: the partial word
    old = _run(PeakPicker(LABELS, StreamConfig(average_window_ms=0, lookahead_ms=0, threshold=0.7)), frames)
    assert [d.label for d in old] == ["no"]


def test_on_a_plateau_the_earliest_hop_is_the_peak_unless_a_clearly_higher_one_follows():
    frames = [{}, {"up": 0.80}, {"up": 0.81}, {"up": 0.82}, {"up": 0.79}, {}, {}, {}, {}, {}]
    rule = dict(average_window_ms=0, lookahead_ms=300)
    assert [d.time_ms for d in _run(PeakPicker(LABELS, StreamConfig(peak_margin=0.05, **rule)), frames)] == [200.0]
    assert [d.time_ms for d in _run(PeakPicker(LABELS, StreamConfig(peak_margin=0.0, **rule)), frames)] == [400.0]


def test_per_command_thresholds_and_suppression():
    frames = [{"up": 0.6}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {"yes": 0.6}, {"yes": 0.65}, {}]
    cfg = StreamConfig(average_window_ms=0, lookahead_ms=0, threshold=0.7, thresholds={"up": 0.5})
    assert [d.label for d in _run(PeakPicker(LABELS, cfg), frames)] == ["up"]  # yes stays under 0.7
    twice = [{"stop": 0.9}, {}, {}, {"stop": 0.9}, {}, {}, {}, {}, {}, {}, {}, {"stop": 0.9}]
    cfg = StreamConfig(average_window_ms=0, lookahead_ms=0, suppression_ms=1000)
    assert [d.time_ms for d in _run(PeakPicker(LABELS, cfg), twice)] == [100.0, 1200.0]


def test_a_word_holding_the_window_past_the_suppression_fires_once_and_re_arms_after():
    # "up" over the threshold for 1.5 s (a slow word in a sliding window), a dip, then again
    frames = [{"up": 0.8}] * 15 + [{"up": 0.3}] + [{"up": 0.8}] * 3 + [{}] * 12 + [{"up": 0.8}]
    cfg = StreamConfig(average_window_ms=0, lookahead_ms=0, threshold=0.5, suppression_ms=1000)
    dets = _run(PeakPicker(LABELS, cfg), frames)
    assert [d.time_ms for d in dets] == [100.0, 1700.0, 3200.0]  # not again at 1100 ms, on the same word
    rec = Recording(np.arange(1, len(frames) + 1) * 100.0, np.stack([_probs(f) for f in frames]), [],
                    len(frames) * 100.0, 100.0, 1000.0)
    assert [d.time_ms for d in replay(rec, LABELS, cfg)] == [100.0, 1700.0, 3200.0]  # replays the same


def test_a_peak_at_the_end_of_the_stream_is_flushed():
    cfg = StreamConfig(average_window_ms=0, lookahead_ms=300)
    dets = _run(PeakPicker(LABELS, cfg), [{}, {}, {"left": 0.9}])
    assert [(d.label, d.time_ms, d.fired_ms) for d in dets] == [("left", 300.0, 300.0)]


def test_rule_config_is_validated():
    with pytest.raises(ConfigError):
        StreamConfig(threshold=1.5)
    with pytest.raises(ConfigError):
        StreamConfig(thresholds={"yes": 0.0})
    with pytest.raises(ConfigError):
        StreamConfig(lookahead_ms=-1)


def _recording(frames, truth, hop_ms=100.0):
    probs = np.stack([_probs(s) for s in frames])
    times = np.arange(1, len(frames) + 1) * hop_ms
    return Recording(times, probs, truth, len(frames) * hop_ms, hop_ms, 1000.0)


def test_calibration_finds_per_command_thresholds_that_meet_the_limits():
    # "yes" is always heard at 0.5-0.6; "no" fires falsely at 0.6 on talk but is heard at 0.9
    frames, truth = [], []
    for i in range(20):
        word = ("yes", "no")[i % 2]
        truth.append(Event(word, len(frames) * 100.0, len(frames) * 100.0 + 800))
        frames += [{}] * 5 + [{word: 0.55 if word == "yes" else 0.9}] * 3 + [{}] * 22
    talk = _recording([{}] * 20 + [{"no": 0.6}] + [{}] * 20, [])
    talk.duration_ms = 3.6e6  # one false alarm an hour at most
    recs = [_recording(frames, truth)]
    base = StreamConfig(average_window_ms=0, lookahead_ms=0, threshold=0.7)
    assert evaluate(recs, [talk], LABELS, base)["correct_pct"] == 50.0
    cfg, scores = calibrate(recs, [talk], LABELS, base, Limits(max_false_alarms_per_hour=0.5),
                            windows_ms=(0.0,), lookaheads_ms=(0.0,), peak_margins=(0.0,), progress=False)
    assert scores["correct_pct"] == 100.0 and scores["speech_false_alarms_per_hour"] == 0.0
    assert cfg.threshold_of("yes") <= 0.55 < 0.6 < cfg.threshold_of("no") <= 0.9
    rows = sweep(recs, [talk], LABELS, cfg, thresholds=(0.5, 0.8))
    assert [r["threshold"] for r in rows] == ["0.50", "0.80", "calibrated"]
    assert rows[0]["speech_false_alarms_per_hour"] > 0 and rows[1]["correct_pct"] == 50.0


def test_calibration_does_not_buy_silence_with_deafness():
    # every "no" is heard at 0.8, but read speech fires "no" at 0.85 once an hour: silence on the
    # speech costs every "no"; half the commands missed is worse than one false alarm an hour
    frames, truth = [], []
    for i in range(20):
        word = ("yes", "no")[i % 2]
        truth.append(Event(word, len(frames) * 100.0, len(frames) * 100.0 + 800))
        frames += [{}] * 5 + [{word: 0.8}] * 3 + [{}] * 22
    talk = _recording([{}] * 20 + [{"no": 0.85}] + [{}] * 20, [])
    talk.duration_ms = 3.6e6
    recs = [_recording(frames, truth)]
    base = StreamConfig(average_window_ms=0, lookahead_ms=0, threshold=0.7)
    kw = dict(windows_ms=(0.0,), lookaheads_ms=(0.0,), peak_margins=(0.0,), progress=False)
    limits = Limits(max_false_alarms_per_hour=0.5)
    _, deaf = calibrate(recs, [talk], LABELS, base, limits, **kw)  # one-clip accuracy unknown: FA limit rules
    assert deaf["correct_pct"] == 50.0 and deaf["speech_false_alarms_per_hour"] == 0.0
    recs[0].clip_accuracy_pct = 100.0  # the model knows every word one clip at a time
    cfg, scores = calibrate(recs, [talk], LABELS, base, limits, **kw)
    assert scores["correct_pct"] == 100.0 and scores["speech_false_alarms_per_hour"] == 1.0
    assert cfg.threshold_of("no") <= 0.8
    assert not limits.within(scores) and limits.within({**scores, "speech_false_alarms_per_hour": 0.0})


def test_delay_is_measured_from_the_end_of_the_word_to_the_report():
    from speechlstm.stream import Detection

    truth = [Event("yes", 1000, 1700), Event("no", 5000, 5600)]
    dets = [Detection("yes", 0.9, 1900, 900, 2100), Detection("no", 0.9, 5800, 4800, 6100)]
    r = score_stream(dets, truth, 60_000)
    assert r["correct_pct"] == 100.0 and r["median_delay_ms"] == 450.0 and r["missed_pct"] == 0.0


@pytest.fixture(scope="module")
def spoken():
    rng = np.random.default_rng(1)
    words = ["left", "stop", "up", "go"]
    audio = 0.003 * rng.standard_normal(16000 * (2 * len(words) + 2)).astype(np.float32)
    truth = []
    for i, w in enumerate(words):
        x, _ = read_audio(next(EXAMPLES.glob(f"{w}_*.wav")), 16000)
        at = 16000 + 2 * 16000 * i
        audio[at : at + len(x)] += x
        truth.append(Event(w, 1000.0 * at / 16000))
    return audio, truth


@needs_model
def test_replaying_recorded_posteriors_gives_the_live_detections(spoken):
    audio, truth = spoken
    rec = Recognizer.from_checkpoint(device="cpu")
    for cfg in (StreamConfig(), StreamConfig(lookahead_ms=0, average_window_ms=500, threshold=0.6),
                StreamConfig(lookahead_ms=200, average_window_ms=250, thresholds={"up": 0.5})):
        streamer = StreamingRecognizer(rec, cfg)
        recording, live = record(streamer, audio, truth, progress=False)
        again = replay(recording, rec.labels, cfg)
        assert [(d.label, d.time_ms, d.fired_ms) for d in again] == [(d.label, d.time_ms, d.fired_ms) for d in live]
        np.testing.assert_allclose([d.score for d in again], [d.score for d in live], atol=1e-5)
    assert [d.label for d in live] == [e.label for e in truth]


@needs_model
def test_the_checkpoint_carries_the_rule_to_every_surface(tmp_path, spoken):
    ckpt = load_checkpoint()
    ckpt.streaming = StreamConfig(threshold=0.99, thresholds={"left": 0.5}, lookahead_ms=200)
    save_checkpoint(ckpt, tmp_path / "m.pt")
    rec = Recognizer.from_checkpoint(tmp_path / "m.pt", device="cpu")
    s = StreamingRecognizer(rec)
    assert s.config == ckpt.streaming
    audio, _ = spoken
    dets = s.push(audio, last=True)
    assert [d.label for d in dets] == ["left"]  # only left's threshold is within reach
    assert StreamingRecognizer(rec, threshold=0.7).config.thresholds == {}  # one threshold for all
    wav = tmp_path / "s.wav"
    import soundfile as sf

    sf.write(wav, audio, 16000)
    out = subprocess.run([sys.executable, "-m", "speechlstm", "live", "--checkpoint", str(tmp_path / "m.pt"),
                          "--input", str(wav), "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [json.loads(x)["label"] for x in out.stdout.splitlines()] == ["left"]


@needs_model
def test_sweep_and_calibrate_from_the_command_line(tmp_path, spoken):
    import soundfile as sf

    audio, truth = spoken
    wav, csv_ = tmp_path / "s.wav", tmp_path / "s.csv"
    sf.write(wav, audio, 16000)
    from speechlstm.stream_make import write_truth

    write_truth(truth, csv_)
    talk = tmp_path / "talk.wav"
    sf.write(talk, 0.003 * np.random.default_rng(0).standard_normal(5 * 16000), 16000)
    base = [sys.executable, "-m", "speechlstm"]
    done = subprocess.run(base + ["evaluate-stream", "--audio", str(wav), "--labels", str(csv_), "--speech-audio",
                                  str(talk), "--sweep", "--out", str(tmp_path / "sw"), "--json", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["correct_pct"] == 100.0
    rec = Recognizer.from_checkpoint(device="cpu")  # the one-clip figure: each command's second of the recording
    starts = [round(e.time_ms * rec.sample_rate / 1000) for e in truth]
    seconds = np.stack([audio[at : at + rec.clip_samples] for at in starts])
    heard = [rec.labels[i] for i in rec.probabilities(seconds).argmax(1)]
    assert result["clip_accuracy_pct"] == round(100 * np.mean([h == e.label for h, e in zip(heard, truth)]), 2)
    assert result["clip_accuracy_pct"] >= 75.0
    assert result["speech_false_alarms_per_hour"] == 0.0
    # the default model for streams carries calibrated per-command thresholds: the sweep's last row
    assert [r["threshold"] for r in result["sweep"]][-2:] == ["0.95", "calibrated"]
    for name in ("sweep.csv", "sweep.md", "sweep.png"):
        assert (tmp_path / "sw" / name).stat().st_size > 100
    out = tmp_path / "cal.pt"
    done = subprocess.run(base + ["calibrate-stream", "--audio", str(wav), "--labels", str(csv_), "--out", str(out),
                                  "--quiet"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    cal = load_checkpoint(out)
    assert json.loads(done.stdout)["rule"]["threshold"] == cal.streaming.threshold
    assert cal.metrics["stream_calibration"]["correct_pct"] == 100.0
    for k, v in load_checkpoint(DEFAULT_CHECKPOINT).state_dict.items():  # the weights are the input's
        assert np.array_equal(v.numpy(), cal.state_dict[k].numpy())
