"""Read-speech rows for streaming, word extents, and LibriSpeech-layout corpora."""

import numpy as np
import pytest
import torch

from conftest import LIBRISPEECH_SAMPLE, SR, make_fake_dataset, make_fake_librispeech, needs, word_tone
from speechlstm.audio import read_audio, speech_bounds
from speechlstm.loop import OptimConfig
from speechlstm.train import TrainConfig
from speechlstm.corpus import read_utterances, speaker_half, transcript_words
from speechlstm.errors import ConfigError, DataError
from speechlstm.stream_make import make_stream
from speechlstm.windows import StreamWindows, WindowConfig, load_talk

LABELS = ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def test_speech_bounds_find_the_word():
    x = np.zeros((2, SR), np.float32)
    x[0, 4000:9000] = 0.5 * np.sin(np.arange(5000) * 0.3)
    x[0] += 0.0005 * np.random.default_rng(0).standard_normal(SR)
    a, b = speech_bounds(x, SR // 100)
    assert abs(a[0] - 4000) <= 160 and abs(b[0] - 9000) <= 160
    assert (a[1], b[1]) == (0, SR)  # silence: the whole clip


def _batch(n=64):
    """n clips of a 600 ms word, centred."""
    waves = np.stack([word_tone(LABELS[2 + i % 10], "s1") for i in range(n)])
    return torch.from_numpy(waves), torch.tensor([2 + i % 10 for i in range(n)])


def test_talk_rows_are_read_speech_labelled_unknown(tmp_path):
    corpus = make_fake_librispeech(tmp_path / "ls")
    n_utts = len(read_utterances(corpus))
    assert n_utts == 12 and len(load_talk(corpus, SR, progress=False)) == 8 * 4 * SR  # "no" utterances left out
    talk = np.arange(1, 30_001, dtype=np.int16)  # a ramp: a crop tells where it starts and its gain
    wave, y = _batch(64)
    out, label = StreamWindows(WindowConfig(talk_ratio=0.25), LABELS, SR, talk)(wave, y,
                                                                               torch.Generator().manual_seed(2))
    assert out.shape == (80, SR) and (label[64:] == 1).all() and torch.equal(label[:64], y)
    assert torch.equal(out[:64], wave.clamp(-1, 1))  # the batch's own rows are left as they were
    starts = []
    for row in out[64:].numpy().astype(np.float64):
        gain = (row[-1] - row[0]) / (SR - 1) * 32767  # the slope of the ramp
        start = round(row[0] / gain * 32767) - 1
        assert 0.1 - 1e-4 <= gain <= 1 + 1e-4  # 0 to -20 dB
        np.testing.assert_allclose(row, gain * talk[start : start + SR] / 32767, atol=1e-5)  # a crop of the speech
        starts.append(start)
    assert len(set(starts)) == 16  # every row its own place
    same, labels = StreamWindows(WindowConfig(), LABELS, SR, talk)(wave, y, torch.Generator())
    assert same is wave and labels is y  # talk_ratio 0: nothing added


def test_windows_config_is_checked():
    with pytest.raises(ConfigError):
        WindowConfig(talk_ratio=-0.5)


def test_training_with_talk_runs_end_to_end(tmp_path):
    from speechlstm.checkpoint import load_checkpoint
    from speechlstm.train import train

    root = make_fake_dataset(tmp_path / "sc")
    corpus = make_fake_librispeech(tmp_path / "ls")
    cfg = TrainConfig(optim=OptimConfig(epochs=2, batch_size=16), windows=WindowConfig(talk_ratio=0.25))
    result = train(root, tmp_path / "m.pt", cfg, progress=False, talk_dir=corpus)
    ckpt = load_checkpoint(result.checkpoint)
    assert TrainConfig.from_dict(ckpt.train).windows.talk_ratio == 0.25 and ckpt.provenance["talk_dir"] == str(corpus.resolve())
    with pytest.raises(ConfigError, match="talk"):
        train(root, tmp_path / "n.pt", TrainConfig(optim=OptimConfig(epochs=1), windows=WindowConfig(talk_ratio=0.2)),
              progress=False)


def test_corpus_halves_split_the_speakers(tmp_path):
    corpus = make_fake_librispeech(tmp_path / "ls", speakers=tuple(str(s) for s in range(100, 130)))
    val = read_utterances(corpus, "validation")
    test = read_utterances(corpus, "test")
    assert {u.speaker for u in val}.isdisjoint({u.speaker for u in test})
    assert len(val) + len(test) == 90 and val and test
    assert all(speaker_half(u.speaker) == "validation" for u in val)
    with pytest.raises(DataError):
        read_utterances(tmp_path / "sc-missing")
    quiet = read_utterances(corpus, without_words=("no", "stop"))  # "HE SAID NO TO THEM" goes
    assert len(quiet) == 60 and not any("NO" in u.text.split() for u in quiet)
    assert transcript_words("Don't say NO, sir.") == {"DON'T", "SAY", "NO", "SIR"}
    with pytest.raises(DataError, match="without the words A, NO, THE"):
        read_utterances(corpus, "test", without_words=("no", "the", "a"))


@needs(LIBRISPEECH_SAMPLE)
def test_the_real_librispeech_sample_reads():
    utts = read_utterances(LIBRISPEECH_SAMPLE)
    assert len(utts) == 8 and {u.speaker for u in utts} == {"19", "32"}
    assert any(" RIGHT " in f" {u.text} " for u in utts)


def test_streams_with_talk_between_commands_and_talk_alone(tmp_path):
    root = make_fake_dataset(tmp_path / "sc", speakers=6)
    corpus = make_fake_librispeech(tmp_path / "ls")
    quiet, events = make_stream(root, "train", minutes=0.5, seed=5)
    talky, same = make_stream(root, "train", minutes=0.5, seed=5, talk_dir=corpus, talk_volume=1.0)
    assert [e.label for e in same] == [e.label for e in events]  # the talk comes from its own stream of draws
    for e in events:  # every clip's end of speech is in the truth, inside its clip
        assert e.time_ms < e.end_ms <= e.time_ms + 1000
    gaps = np.ones(len(quiet), bool)
    for e in events:
        s = int(e.time_ms * 16) - 300 * 16
        gaps[max(0, s) : s + 1600 * 16] = False
    assert np.abs(talky - quiet)[gaps].max() > 0.05  # talk fills the gaps ...
    for e in events:  # ... and never touches the clips
        s = int(e.time_ms * 16)
        np.testing.assert_allclose(talky[s : s + SR], quiet[s : s + SR], atol=1e-6)
    only, none = make_stream(root, minutes=0.2, seed=1, talk_dir=corpus, talk_only=True)
    assert none == [] and len(only) == int(0.2 * 60 * SR) and np.abs(only).max() > 0.1
    with pytest.raises(DataError):
        make_stream(None, minutes=0.1, talk_only=True)


def _contains(stream: np.ndarray, part: np.ndarray) -> bool:
    starts = np.flatnonzero(stream[: len(stream) - len(part) + 1] == part[0])
    return any(np.array_equal(stream[s : s + len(part)], part) for s in starts)


def test_talk_streams_are_command_free_unless_asked(tmp_path):
    # every detection on a --talk-only stream counts as a false alarm: a reader's
    # "no" must not be in it (each speaker's second utterance says one)
    corpus = make_fake_librispeech(tmp_path / "ls")
    said, plain = [], []
    for u in read_utterances(corpus):
        x, _ = read_audio(u.path, SR)
        (said if "NO" in u.text.split() else plain).append(0.5 * x[: SR // 2])  # talk_volume 0.5, exact
    for with_commands in (False, True):
        stream, _ = make_stream(None, minutes=1.5, seed=3, talk_dir=corpus, talk_only=True,
                                talk_with_commands=with_commands)
        assert all(_contains(stream, p) for p in plain)  # 1.5 min holds every utterance
        assert any(_contains(stream, p) for p in said) == with_commands
