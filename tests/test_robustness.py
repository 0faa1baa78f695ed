"""Bad and unusual audio through the API and the CLI: the right answer or a
clear typed error, never a crash (the outcomes table is docs/robustness.md)."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLES, SHIPPED
from speechlstm import AudioError, Recognizer, read_audio

YES = next(EXAMPLES.glob("yes_*.wav"))
needs_model = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped checkpoint")


def _yes():
    return read_audio(YES)[0]


def _write(path, x, rate=16000, **kw):
    sf.write(path, x, rate, **kw)
    return path


def _band_limited_label(x16k):
    return Recognizer.from_checkpoint(device="cpu").predict(x16k, 16000).label


def _cases(tmp):
    """name -> (path, expected): expected is a label, or an error fragment."""
    x = _yes()
    wav = YES.read_bytes()
    c = {}
    (tmp / "empty.wav").write_bytes(b"")
    c["empty file"] = (tmp / "empty.wav", "error:empty")
    c["0 samples"] = (_write(tmp / "zero.wav", np.zeros(0, np.int16)), "error:no samples")
    (tmp / "random.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    c["random bytes"] = (tmp / "random.wav", "error:not a readable audio file")
    (tmp / "trunc.wav").write_bytes(wav[:30])
    c["truncated header"] = (tmp / "trunc.wav", "error:not a readable audio file")
    (tmp / "text.wav").write_text("hello, I am not a wav file\n" * 20)
    c["text named .wav"] = (tmp / "text.wav", "error:not a readable audio file")
    for sub in ("PCM_U8", "PCM_24", "PCM_32", "FLOAT"):
        c[f"wav {sub}"] = (_write(tmp / f"{sub}.wav", x, subtype=sub), "yes")
    c["stereo"] = (_write(tmp / "stereo.wav", np.stack([x, x], 1)), "yes")
    c["6 channels"] = (_write(tmp / "six.wav", np.stack([x] * 6, 1)), "yes")
    from speechlstm.audio import resample

    for rate in (8000, 22050, 44100, 48000):
        c[f"{rate} Hz"] = (_write(tmp / f"r{rate}.wav", resample(x, 16000, rate), rate), "yes")
    # 8 kHz keeps nothing above 4 kHz: expect what the model says to that band-limited clip at 16 kHz
    # (the shipped model hears this "yes" without its top band as "left"; docs/robustness.md)
    c["8000 Hz"] = (c["8000 Hz"][0], _band_limited_label(resample(resample(x, 16000, 8000), 8000, 16000)))
    nan = x.copy()
    nan[100] = np.nan
    c["NaN sample"] = (_write(tmp / "nan.wav", nan, subtype="FLOAT"), "error:NaN")
    inf = x.copy()
    inf[5] = np.inf
    c["inf sample"] = (_write(tmp / "inf.wav", inf, subtype="FLOAT"), "error:NaN or infinite")
    c["full-scale clipping"] = (_write(tmp / "clip.wav", np.clip(30 * x, -1, 1)), "yes")
    c["DC offset 0.4"] = (_write(tmp / "dc.wav", np.clip(x + 0.4, -1, 1)), "yes")
    long = 0.001 * np.random.default_rng(1).standard_normal(600 * 16000).astype(np.float32)
    long[400 * 16000 : 400 * 16000 + len(x)] += x
    c["10 minutes long"] = (_write(tmp / "long.flac", long, format="FLAC"), "yes")
    for fmt in ("FLAC", "OGG", "MP3"):
        c[fmt.lower()] = (_write(tmp / f"c.{fmt.lower()}", x, format=fmt), "yes")
    return c


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return _cases(tmp_path_factory.mktemp("bad"))


@needs_model
def test_api_right_answer_or_typed_error(cases):
    rec = Recognizer.from_checkpoint(device="cpu")
    for name, (path, expected) in cases.items():
        if expected.startswith("error:"):
            with pytest.raises(AudioError, match=expected[6:]):
                rec.predict_file(path)
        else:
            pred = rec.predict_file(path)
            assert pred.label == expected, (name, pred.top)
    pred = rec.predict_file(cases["10 minutes long"][0])
    assert abs(pred.offset_ms - 400_000) < 1000 and pred.duration_ms == pytest.approx(600_000)


@needs_model
def test_cli_exit_code_and_one_line_message(cases):
    paths = [str(p) for p, _ in cases.values()]
    done = subprocess.run([sys.executable, "-m", "speechlstm", "predict", "--json", *paths],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1  # some inputs are bad; every one was still answered
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert len(lines) == len(cases)
    for (name, (_, expected)), line in zip(cases.items(), lines):
        if expected.startswith("error:"):
            assert expected[6:] in line["error"], (name, line)
        else:
            assert line["label"] == expected, (name, line)
    errors = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == sum(e.startswith("error:") for _, e in cases.values())
    assert "Traceback" not in done.stderr


def test_array_edge_cases_through_read_audio():
    with pytest.raises(AudioError):
        read_audio(np.zeros((2, 3, 4), np.float32), source_rate=16000)  # 3-D
    with pytest.raises(AudioError):
        read_audio(np.array(["a", "b"]), source_rate=16000)
    with pytest.raises(AudioError):
        read_audio(np.zeros(10, np.float32))  # an array without its rate
    x, _ = read_audio(np.full(100, 5.0, np.float32), source_rate=16000)  # out of range: clipped
    assert x.max() == 1.0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_fuzz_random_bytes_never_crash_the_reader(data):
    try:
        x, rate = read_audio(data)
    except AudioError:
        return
    assert x.dtype == np.float32 and x.ndim == 1 and rate > 0 and np.all(np.abs(x) <= 1)


_WAV = io.BytesIO()
sf.write(_WAV, (0.3 * np.sin(np.arange(800) / 4)).astype(np.float32), 8000, format="WAV", subtype="PCM_16")
_WAV = _WAV.getvalue()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_WAV) - 1), st.integers(0, 255)), min_size=1, max_size=12),
       st.integers(8, len(_WAV)))
def test_fuzz_mutated_wav_headers_and_data(mutations, cut):
    data = bytearray(_WAV[:cut])
    for pos, value in mutations:
        if pos < len(data):
            data[pos] = value
    try:
        x, rate = read_audio(bytes(data), 16000)
    except AudioError:
        return
    assert x.dtype == np.float32 and rate == 16000 and np.all(np.isfinite(x))
