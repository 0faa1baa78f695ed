"""The shipped checkpoint through the public API and the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import EXAMPLES, SHIPPED, TEST_MINI, needs_test_mini
from speechlstm import AudioError, Recognizer, read_audio
from speechlstm.audio import resample

pytestmark = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped checkpoint")
EXAMPLE_WAVS = sorted(EXAMPLES.glob("*.wav"))


def _word(path):
    return path.name.split("_")[0]


@pytest.fixture(scope="module")
def rec():
    return Recognizer.from_checkpoint(device="cpu")


def test_shipped_model_gets_the_examples_right(rec):
    assert len(EXAMPLE_WAVS) >= 5
    for path in EXAMPLE_WAVS:
        pred = rec.predict_file(path, top_k=5)
        assert pred.label == _word(path), (path.name, pred.top)
        assert len(pred.top) == 5 and abs(sum(p for _, p in pred.top) - 1) < 0.5
        assert pred.top == sorted(pred.top, key=lambda t: -t[1])


@needs_test_mini
def test_shipped_model_on_real_test_clips(rec):
    """A few real clips per class from the canonical test set (speakers unseen in training)."""
    paths, truth = [], []
    for d in sorted(p for p in TEST_MINI.iterdir() if p.is_dir()):
        for f in sorted(d.glob("*.wav"))[:6]:
            paths.append(f)
            truth.append(d.name)
    preds = rec.predict_batch(paths)
    acc = np.mean([p.label == t for p, t in zip(preds, truth)])
    assert acc >= 0.8, acc


def _variants(tmp_path, path):
    """The same clip in every supported format, bit depth, rate and channel count."""
    x, sr = read_audio(path)
    out = {}
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        p = tmp_path / f"{subtype}.wav"
        sf.write(p, x, sr, subtype=subtype)
        out[p.name] = p
    for fmt in ("flac", "ogg", "mp3"):
        p = tmp_path / f"clip.{fmt}"
        sf.write(p, x, sr, format=fmt.upper() if fmt != "ogg" else "OGG")
        out[p.name] = p
    for rate in (8000, 22050, 44100, 48000):
        p = tmp_path / f"rate{rate}.wav"
        sf.write(p, resample(x, sr, rate), rate, subtype="PCM_16")
        out[p.name] = p
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([x, x], 1), sr)
    six = tmp_path / "six.wav"
    sf.write(six, np.stack([x] * 6, 1), sr)
    out.update({"stereo.wav": stereo, "six.wav": six})
    return x, sr, out


def test_every_format_and_rate_gives_the_label_of_the_original(rec, tmp_path):
    for example in EXAMPLE_WAVS:
        x, sr, variants = _variants(tmp_path, example)
        want = rec.predict(x, sr).label
        got = {name: rec.predict_file(p).label for name, p in variants.items()}
        # 8 kHz audio has nothing above 4 kHz: it must read as the same band-limited clip does at 16 kHz
        # (the word itself may change: the shipped model hears this "yes" as "left" without its top band)
        telephone = rec.predict(resample(resample(x, sr, 8000), 8000, sr), sr).label
        assert got.pop("rate8000.wav") == telephone, example.name
        # 8-bit audio carries its quantization noise (26 dB under this quiet "left"): it must read as
        # the same 8-bit signal does in memory (the model of 2026-12-07 evening hears that one as
        # _unknown_; test_mini quantized to 8 bits: 93.58% against 94.25%)
        eight_bit = np.clip(np.round(x * 128), -128, 127) / 128
        assert got.pop("PCM_U8.wav") == rec.predict(eight_bit.astype(np.float32), sr).label, example.name
        assert all(label == want for label in got.values()), (example.name, got)
        # arrays of other dtypes/layouts through predict()
        pcm = np.round(x * 32767).astype(np.int16)
        assert rec.predict(pcm, sr).label == want
        assert rec.predict(np.stack([x, x]), sr).label == want  # (channels, n)
        assert rec.predict(resample(x, sr, 44100), 44100).label == want


def test_short_and_long_audio(rec):
    x, sr = read_audio(EXAMPLE_WAVS[0])
    word = _word(EXAMPLE_WAVS[0])
    # shorter than a second: padded
    start = int(np.argmax(np.abs(x)))
    short = x[max(0, start - 4000) : start + 4000]
    assert rec.predict(short, sr).label == word
    # ten seconds with the word at 6.2 s: the window around the speech is used
    rng = np.random.default_rng(0)
    long = 0.002 * rng.standard_normal(10 * sr).astype(np.float32)
    at = int(6.2 * sr)
    long[at : at + len(x)] += x
    pred = rec.predict(long, sr)
    assert pred.label == word and pred.duration_ms == pytest.approx(10000)
    assert 6200 - 1000 <= pred.offset_ms <= 6200 + 1000


def test_batch_matches_single(rec):
    preds = rec.predict_batch(EXAMPLE_WAVS, top_k=3)
    for path, pred in zip(EXAMPLE_WAVS, preds):
        single = rec.predict_file(path)
        assert single.label == pred.label and single.score == pytest.approx(pred.score, abs=1e-4)


def test_bad_input_is_a_typed_error(rec, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    with pytest.raises(AudioError):
        rec.predict_file(bad)
    with pytest.raises(AudioError):
        rec.predict(np.zeros(0, np.float32), 16000)
    assert rec.predict_file(EXAMPLE_WAVS[0]).label == _word(EXAMPLE_WAVS[0])  # still works


def test_cli_predict_json_and_exit_codes(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    cmd = [sys.executable, "-m", "speechlstm", "predict", "--json", "--top-k", "2",
           str(EXAMPLE_WAVS[0]), str(bad)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1  # one file failed, the other was still answered
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["label"] == _word(EXAMPLE_WAVS[0]) and len(lines[0]["top"]) == 2
    assert "error" in lines[1] and "notes.wav" in done.stderr
    ok = subprocess.run([sys.executable, "-m", "speechlstm", "predict", str(EXAMPLE_WAVS[1])],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and _word(EXAMPLE_WAVS[1]) in ok.stdout
