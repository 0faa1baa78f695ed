"""False-alarm mining (mining.py) and training's hard read-speech rows."""

import numpy as np
import pytest
import torch

from conftest import EXAMPLES, LIBRISPEECH_SAMPLE, SHIPPED, SR, make_fake_dataset, make_fake_librispeech, needs
from speechlstm import Recognizer, read_audio
from speechlstm.loop import OptimConfig
from speechlstm.mining import MiningConfig
from speechlstm.train import TrainConfig
from speechlstm.windows import WindowConfig
from speechlstm.errors import ConfigError
from speechlstm.mining import mine_false_alarms
from speechlstm.windows import StreamWindows

LABELS = ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def _int16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped checkpoint")
@needs(LIBRISPEECH_SAMPLE)
def test_mining_finds_a_command_hidden_in_read_speech_and_not_in_quiet():
    rec = Recognizer.from_checkpoint(device="cpu")
    talk, _ = read_audio(LIBRISPEECH_SAMPLE / "19" / "198" / "19-198-0004.flac", SR)
    yes, _ = read_audio(EXAMPLES / "yes_283d7a53_nohash_0.wav", SR)
    quiet = 0.001 * np.random.default_rng(0).standard_normal(4 * SR).astype(np.float32)
    audio = np.concatenate([quiet, yes, 0.3 * talk / np.abs(talk).max(), quiet])
    found = mine_false_alarms(rec, _int16(audio), hop_ms=100.0, min_score=0.5, progress=False)
    assert np.all(np.diff(found) > 0) and found.dtype == np.int64
    yes_at = len(quiet)  # windows holding most of the "yes" clip are mined ...
    assert np.any((found > yes_at - SR // 2) & (found < yes_at + SR // 2))
    assert not np.any(found + SR <= 3 * SR)  # ... windows of the quiet start are not
    every = mine_false_alarms(rec, _int16(audio), hop_ms=100.0, min_score=0.0, progress=False)
    assert len(every) == (len(audio) - SR) // 1600 + 1 and set(found) <= set(every)
    assert len(mine_false_alarms(rec, _int16(audio[: SR // 2]), progress=False)) == 0  # shorter than a clip
    with pytest.raises(ValueError, match="hop_ms"):
        mine_false_alarms(rec, _int16(audio), hop_ms=0.0)


def test_hard_rows_are_drawn_around_the_mined_windows():
    talk = np.zeros(60 * SR, np.int16)
    talk[30 * SR : 31 * SR + SR // 5] = _int16(0.5 * np.random.default_rng(0).standard_normal(SR + SR // 5))
    wave, y = torch.zeros(64, SR), torch.full((64,), 2)
    loud = {}
    for share in (0.0, 1.0):
        out, label = StreamWindows(WindowConfig(talk_ratio=1.0), LABELS, SR, talk, np.array([30 * SR]),
                                   hard_share=share)(wave, y, torch.Generator().manual_seed(0))
        rows = out[64:]
        assert len(rows) == 64 and (label[64:] == 1).all()
        # a noise burst at 30-31.2 s: a crop around 30 s (+-100 ms) holds most of it
        loud[share] = float((rows.abs().amax(1) > 0.05).float().mean())
    assert loud[1.0] == 1.0 and loud[0.0] < 0.2


def test_training_mines_the_false_alarms_of_a_model(tmp_path):
    from speechlstm.checkpoint import load_checkpoint
    from speechlstm.train import train

    root = make_fake_dataset(tmp_path / "sc")
    corpus = make_fake_librispeech(tmp_path / "ls")
    first = train(root, tmp_path / "a.pt", TrainConfig(optim=OptimConfig(epochs=1, batch_size=16),
                                                          windows=WindowConfig(talk_ratio=0.25)),
                  progress=False, talk_dir=corpus).checkpoint
    cfg = TrainConfig(optim=OptimConfig(epochs=1, batch_size=16), windows=WindowConfig(talk_ratio=0.25),
                      mining=MiningConfig(share=0.5, min_score=0.0))
    second = train(root, tmp_path / "b.pt", cfg, progress=False, talk_dir=corpus, mine_with=first)
    ckpt = load_checkpoint(second.checkpoint)
    assert TrainConfig.from_dict(ckpt.train).mining.share == 0.5 and ckpt.provenance["mine_with"] == str(first.resolve())
    with pytest.raises(ConfigError, match="mine-with"):
        train(root, tmp_path / "c.pt", cfg, progress=False, talk_dir=corpus)
    with pytest.raises(ConfigError):
        MiningConfig(share=1.5)
