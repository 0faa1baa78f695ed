import io

import numpy as np
import pytest
import soundfile as sf

from speechlstm import AudioError, read_audio
from speechlstm.audio import pad_or_trim, speech_window


def test_int_dtypes_scale_to_unit_range():
    for dtype, full in ((np.int16, 32767), (np.int32, 2**31 - 1)):
        x, sr = read_audio(np.array([0, full, -full], dtype=dtype), source_rate=16000)
        assert x.dtype == np.float32 and sr == 16000
        np.testing.assert_allclose(x, [0, 1, -1], atol=1e-4)
    x, _ = read_audio(np.array([128, 255, 0], dtype=np.uint8), source_rate=8000)
    np.testing.assert_allclose(x, [0, 127 / 128, -1], atol=1e-6)


def test_channels_mixed_to_mono_either_layout():
    left, right = np.full(100, 0.5, np.float32), np.full(100, -0.1, np.float32)
    for arr in (np.stack([left, right], 1), np.stack([left, right], 0)):
        x, _ = read_audio(arr, source_rate=16000)
        assert x.shape == (100,)
        np.testing.assert_allclose(x, 0.2, atol=1e-6)


def test_resample_keeps_duration_and_pitch():
    sr = 44100
    t = np.arange(sr) / sr
    x, rate = read_audio(np.sin(2 * np.pi * 440 * t).astype(np.float32), 16000, source_rate=sr)
    assert rate == 16000 and abs(len(x) - 16000) <= 1
    peak = np.argmax(np.abs(np.fft.rfft(x))) * 16000 / len(x)
    assert abs(peak - 440) < 2


def test_file_bytes_and_filelike_agree(tmp_path):
    data = (0.3 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    path = tmp_path / "a.wav"
    sf.write(path, data, 8000, subtype="PCM_16")
    a, ra = read_audio(path)
    b, rb = read_audio(path.read_bytes())
    c, rc = read_audio(io.BytesIO(path.read_bytes()))
    assert ra == rb == rc == 8000
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("bad", [np.zeros(0, np.float32), np.array([0.1, np.nan], np.float32),
                                 np.array([np.inf], np.float32)])
def test_bad_arrays_raise_audio_error(bad):
    with pytest.raises(AudioError):
        read_audio(bad, source_rate=16000)


def test_bad_files_raise_audio_error_naming_the_file(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for path in (text, empty, tmp_path / "missing.wav"):
        with pytest.raises(AudioError, match=path.name):
            read_audio(path)


def test_pad_or_trim_centres():
    x = np.arange(1, 5, dtype=np.float32)
    np.testing.assert_array_equal(pad_or_trim(x, 8), [0, 0, 1, 2, 3, 4, 0, 0])
    np.testing.assert_array_equal(pad_or_trim(np.arange(10), 4), [3, 4, 5, 6])


def test_speech_window_finds_the_loud_part():
    rng = np.random.default_rng(0)
    x = 0.001 * rng.standard_normal(5 * 16000).astype(np.float32)
    x[37000:45000] += 0.5 * np.sin(np.arange(8000) / 3)
    start = speech_window(x, 16000, 160)
    assert start <= 37000 and start + 16000 >= 45000
