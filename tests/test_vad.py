"""Voice activity and the isolation check of the streaming rule: the segmenter and
its verdicts on set probabilities, silero-vad on real audio, and the rule live."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import EXAMPLES, LIBRISPEECH_SAMPLE, SHIPPED, needs
from speechlstm import Recognizer, read_audio
from speechlstm.audio import speech_bounds
from speechlstm.config import StreamConfig
from speechlstm.errors import ConfigError
from speechlstm.stream import StreamingRecognizer
from speechlstm.stream_eval import record, replay
from speechlstm.vad import SpeechSegments, VoiceActivity

needs_model = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped checkpoint")
F = 32.0  # ms per frame


def _probs(*runs: tuple[int, float]) -> np.ndarray:
    """(frames, probability) runs -> per-frame probabilities."""
    return np.concatenate([np.full(n, p, np.float32) for n, p in runs])


def _segments(probs: np.ndarray, **kw) -> SpeechSegments:
    s = SpeechSegments(frame_ms=F, **kw)
    s.push(probs)
    return s


def test_segments_open_at_threshold_and_close_after_the_silence():
    # 100 ms of silence is 4 frames; a dip to 0.4 (above 0.5 - 0.15) does not end speech
    s = _segments(_probs((5, 0.1), (10, 0.9), (2, 0.4), (5, 0.9), (3, 0.05), (6, 0.9), (4, 0.05), (3, 0.1)))
    assert [(g.start_ms, g.end_ms, g.closed_ms) for g in s.closed] == [
        (5 * F, 31 * F, 35 * F),  # 3 quiet frames were too few: the word at frame 25 continues it
    ]
    s.finish()
    assert len(s.closed) == 1 and s._start is None
    s = _segments(_probs((5, 0.1), (10, 0.9), (4, 0.05), (6, 0.9)))
    assert [(g.start_ms, g.end_ms, g.closed_ms) for g in s.closed] == [(5 * F, 15 * F, 19 * F)]
    s.finish()
    assert s.closed[-1].start_ms == 19 * F and s.closed[-1].closed_ms == 25 * F


def test_verdict_accepts_a_short_word_once_its_segment_closes():
    s = SpeechSegments(frame_ms=F)
    s.push(_probs((20, 0.05), (15, 0.9)))  # a 480 ms word, still sounding at 1120 ms
    assert s.verdict(200.0, 1200.0, 1200.0, 800.0) is None  # the frames have not reached the window's end
    s.push(_probs((3, 0.05)))
    assert s.verdict(200.0, 1200.0, 1200.0, 800.0) is None  # the word may go on
    s.push(_probs((1, 0.05)))
    assert s.verdict(200.0, 1200.0, 1200.0, 800.0) == (True, 39 * F)
    assert s.verdict(200.0, 1200.0, 400.0, 800.0) == (False, 39 * F)  # longer than 400 ms


def test_verdict_refuses_running_speech_and_windows_without_speech():
    s = _segments(_probs((10, 0.05), (200, 0.9)))  # 6.4 s of talk, still running
    assert s.verdict(2000.0, 3000.0, 1200.0, 800.0) == (False, 3800.0)  # ran on past the deadline
    s = _segments(_probs((10, 0.05), (100, 0.9)))  # at 3.52 s: talk for the last 3.2 s
    assert s.verdict(2000.0, 3000.0, 1200.0, 800.0) is None  # not past the deadline yet
    s = _segments(_probs((100, 0.05)))
    assert s.verdict(1000.0, 2000.0, 1200.0, 800.0) == (False, 2000.0)  # silence: no word at all


def test_the_word_filling_most_of_the_window_decides():
    # a 320 ms word, 300 ms of quiet, then 2.5 s of talk that overlaps the window's end
    p = _probs((10, 0.05), (10, 0.9), (10, 0.05), (80, 0.9), (10, 0.05))
    s = _segments(p)
    assert s.verdict(0.0, 1000.0, 1200.0, 5000.0) == (True, s.closed[1].closed_ms)  # the word fills most
    assert s.verdict(300.0, 1300.0, 1200.0, 5000.0)[0] is False  # the talk fills most
    assert s.verdict(0.0, 1000.0, 1200.0, 800.0)[0] is False  # talk still running 800 ms after the window


def test_live_verdicts_match_the_verdicts_on_all_frames():
    rng = np.random.default_rng(0)
    p = np.repeat((rng.random(100) < 0.5).astype(np.float32) * 0.9 + 0.05, 6)  # 600 frames, runs of 6
    whole = _segments(p)
    whole.finish()
    windows = [(float(a), float(a + 1000)) for a in range(0, 17000, 700)]
    want = [whole.verdict(a, b, 500.0, 300.0) for a, b in windows]
    live, got = SpeechSegments(frame_ms=F), [None] * len(windows)
    for frame in p:
        live.push(frame[None])
        for i, (a, b) in enumerate(windows):
            if got[i] is None:
                got[i] = live.verdict(a, b, 500.0, 300.0)
    live.finish()
    got = [g if g is not None else live.verdict(a, b, 500.0, 300.0) for g, (a, b) in zip(got, windows)]
    assert got == want
    assert {v[0] for v in want} == {True, False}


def test_forgetting_old_segments_changes_no_later_verdict():
    rng = np.random.default_rng(1)
    p = np.repeat((rng.random(300) < 0.5).astype(np.float32) * 0.9 + 0.05, 5)  # 1500 frames, 48 s
    whole = _segments(p)
    whole.finish()
    live = SpeechSegments(frame_ms=F)
    for k, frame in enumerate(p):  # a live stream forgetting all but the last 2 s as it goes
        live.push(frame[None])
        live.forget_before(k * F - 2000.0)
        assert all(g.end_ms > k * F - 2000.0 for g in live.closed)
    live.finish()
    assert 0 < len(live.closed) < len(whole.closed) // 5
    windows = [(float(a), float(a + 1000)) for a in range(46000, 47000, 100)]
    assert [live.verdict(a, b, 500.0, 300.0) for a, b in windows] == [
        whole.verdict(a, b, 500.0, 300.0) for a, b in windows]


def test_the_rule_rejects_bad_isolation_settings():
    for bad in (dict(max_word_ms=0.0), dict(vad_threshold=1.0), dict(vad_silence_ms=-1.0)):
        with pytest.raises(ConfigError):
            StreamConfig(**bad)


def test_importing_silero_keeps_the_callers_thread_count():
    code = ("import torch; torch.set_num_threads(2); from speechlstm.vad import VoiceActivity; "
            "VoiceActivity(); print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2"


def test_voice_activity_on_real_audio_and_any_chunking():
    vad = VoiceActivity(16000)
    x, _ = read_audio(next(EXAMPLES.glob("yes_*.wav")), 16000)
    audio = np.concatenate([np.zeros(16000, np.float32), x, np.zeros(16000, np.float32)])
    whole = vad.probabilities(audio)
    assert whole.shape == (len(audio) // 512,)
    assert whole[:25].max() < 0.1 and whole.max() > 0.8  # quiet lead-in; the word
    vad.reset()
    parts = np.concatenate([vad.push(audio[i : i + 777]) for i in range(0, len(audio), 777)])
    np.testing.assert_allclose(parts, whole, atol=1e-6)
    s = _segments(whole)
    s.finish()
    assert len(s.closed) == 1 and 100 < s.closed[0].duration_ms < 1000
    with pytest.raises(ConfigError, match="8 or 16 kHz"):
        VoiceActivity(22050)


@pytest.fixture(scope="module")
def rec():
    return Recognizer.from_checkpoint(device="cpu")


def _word(name: str) -> np.ndarray:
    x, _ = read_audio(next(EXAMPLES.glob(f"{name}_*.wav")), 16000)
    a, b = speech_bounds(x, 160)
    return 0.3 * x[a:b] / np.abs(x[a:b]).max()


@needs_model
@needs(LIBRISPEECH_SAMPLE)
def test_a_command_inside_running_speech_is_dropped_and_the_same_word_alone_is_kept(rec):
    talk, _ = read_audio(LIBRISPEECH_SAMPLE / "19" / "198" / "19-198-0004.flac", 16000)
    talk = 0.3 * talk / np.abs(talk).max()
    yes, mid, pause = _word("yes"), len(talk) // 2, np.zeros(16000, np.float32)
    gap = np.zeros(800, np.float32)  # 50 ms each side: the model hears the word, the talk runs on around it
    inside = np.concatenate([pause, talk[:mid], gap, yes, gap, talk[mid:], pause])
    plain = StreamingRecognizer(rec, threshold=0.45, max_word_ms=None)
    fired = plain.push(inside, last=True)
    assert "yes" in [d.label for d in fired]  # the model alone hears it (and a false alarm in the talk)
    checked = StreamingRecognizer(rec, threshold=0.45, max_word_ms=1200.0)
    assert checked.push(inside, last=True) == []
    assert checked.not_isolated == len(fired)
    alone = np.concatenate([pause, yes, pause])
    checked.reset()
    dets = checked.push(alone, last=True)
    assert [d.label for d in dets] == ["yes"]
    assert dets[0].fired_ms >= dets[0].time_ms  # reported once the word was known to be over


@needs_model
@needs(LIBRISPEECH_SAMPLE)
def test_isolation_is_chunk_size_invariant_and_replays_exactly(rec):
    talk, _ = read_audio(LIBRISPEECH_SAMPLE / "19" / "198" / "19-198-0004.flac", 16000)
    talk = 0.3 * talk / np.abs(talk).max()
    pause, mid = np.zeros(8000, np.float32), len(talk) // 2
    gap = np.zeros(1120, np.float32)  # 70 ms each side (60-80 ms: the model hears it, the talk runs on)
    inside = np.concatenate([talk[:mid], gap, _word("yes"), gap, talk[mid:]])  # in running speech: not isolated
    audio = np.concatenate([pause, _word("yes"), pause, inside, pause, _word("stop"), pause, _word("go"), pause])
    audio += 0.002 * np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32)
    ref = StreamingRecognizer(rec, threshold=0.45, max_word_ms=1200.0)
    want = ref.push(audio, last=True)
    assert [d.label for d in want] == ["yes", "stop", "go"] and ref.not_isolated >= 1
    assert ref.segments.closed and all(g.end_ms > ref.time_ms - 2000.0 for g in ref.segments.closed)  # forgets
    for chunk in (160, 512, 1601, 7919):
        s = StreamingRecognizer(rec, threshold=0.45, max_word_ms=1200.0)
        got = []
        for i in range(0, len(audio), chunk):
            got += s.push(audio[i : i + chunk], last=i + chunk >= len(audio))
        assert [(d.label, d.time_ms, d.fired_ms) for d in got] == [(d.label, d.time_ms, d.fired_ms) for d in want]
    recording, live = record(StreamingRecognizer(rec, threshold=0.45, max_word_ms=1200.0), audio, [], progress=False)
    again = replay(recording, rec.labels, ref.config)
    assert [(d.label, d.time_ms, d.fired_ms) for d in again] == [(d.label, d.time_ms, d.fired_ms) for d in live]
    off = replay(recording, rec.labels, StreamConfig(**{**ref.config.__dict__, "max_word_ms": None}))
    assert len(off) == len(live) + ref.not_isolated  # the recording replays without the check too
