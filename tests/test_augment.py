"""Augmentations and the training options the ablations use: speed
perturbation, simulated reverberation, mixup, EMA, the unknown ratio, the
--set overrides and synthetic extra data."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import SR, make_fake_dataset, word_tone
from speechlstm.augment import Augmenter
from speechlstm.checkpoint import load_checkpoint
from speechlstm.config import FeatureConfig, ModelConfig, TrainConfig
from speechlstm.data import EVAL_UNKNOWN_RATIO, SpeechCommands
from speechlstm.errors import ConfigError, DataError
from speechlstm.train import state_path, train

QUIET = dict(noise_prob=0.0, shift_ms=0.0, gain_db=0.0, speed=0.0)


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * SR / len(x))


def test_speed_perturbation_scales_pitch_and_spares_skipped_rows():
    aug = Augmenter(TrainConfig(**{**QUIET, "speed": 0.2}), FeatureConfig(), noise=[])
    t = np.arange(SR) / SR
    tone = torch.tensor(0.5 * np.sin(2 * np.pi * 1000 * t), dtype=torch.float32).repeat(64, 1)
    skip = torch.zeros(64, dtype=torch.bool)
    skip[0] = True
    out = aug.wave(tone, torch.Generator().manual_seed(0), skip=skip)
    assert torch.equal(out[0], tone[0])  # silence rows are never touched
    peaks = np.array([_peak_hz(out[i, 4000:12000].numpy()) for i in range(1, 64)])
    assert peaks.min() >= 790 and peaks.max() <= 1210  # rates within [0.8, 1.2]
    assert peaks.max() - peaks.min() > 150  # and really spread over that range


def test_reverb_keeps_loudness_and_adds_a_decaying_tail():
    aug = Augmenter(TrainConfig(reverb_prob=1.0, reverb_rt60_s=(0.4, 0.4), **QUIET), FeatureConfig(), noise=[])
    burst = torch.zeros(8, SR)
    burst[:, 4000:5600] = torch.randn(8, 1600, generator=torch.Generator().manual_seed(1)) * 0.3
    out = aug.wave(burst, torch.Generator().manual_seed(0))
    rms_in, rms_out = burst.pow(2).mean(1).sqrt(), out.pow(2).mean(1).sqrt()
    assert torch.allclose(rms_in, rms_out, rtol=0.02)
    tail = out[:, 6000:9000].pow(2).mean(1)  # after the burst ended: reverberation only
    later = out[:, 9000:12000].pow(2).mean(1)
    assert (tail > 1e-5).all() and (later < tail).all()  # energy there, and decaying
    assert out[:, :4000].abs().max() < 1e-6  # causal: nothing before the sound (FFT round-off only)


def test_config_rejects_out_of_range_augmentation():
    for bad in (dict(speed=0.7), dict(ema_decay=1.0), dict(unknown_ratio=-1), dict(reverb_rt60_s=(0.5, 0.1))):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)


def test_unknown_ratio_changes_training_only(tmp_path):
    root = make_fake_dataset(tmp_path / "sc", speakers=10)
    few = SpeechCommands(root, unknown_ratio=0.1, progress=False)
    many = SpeechCommands(root, unknown_ratio=1.0, progress=False)
    n_unknown = lambda d, split: int((d.split(split).labels == d.labels.index("_unknown_")).sum())
    assert n_unknown(many, "train") > n_unknown(few, "train")
    for split in ("validation", "test"):  # the evaluation protocol never moves
        assert n_unknown(many, split) == n_unknown(few, split)
        assert len(many.split(split)) == len(few.split(split))
    assert EVAL_UNKNOWN_RATIO == 0.1
    oov = many.unknown_set("validation")  # every OOV clip of the split, for the open-set rate
    assert len(oov) == 3 and (oov.labels == many.labels.index("_unknown_")).all()


def _synthetic_tree(root):
    """What `speechlstm synth` writes: word folders of 16 kHz wavs."""
    for word in ("yes", "stop", "hello"):
        (root / word).mkdir(parents=True)
        for i in range(4):
            sf.write(root / word / f"espeakng{i:012d}_nohash_0.wav", word_tone(word, f"tts{i}"), SR,
                     subtype="PCM_16")
    return root


def test_extra_data_joins_training_only(tmp_path):
    root = make_fake_dataset(tmp_path / "sc")
    synth = _synthetic_tree(tmp_path / "synth")
    plain = SpeechCommands(root, progress=False)
    mixed = SpeechCommands(root, extra_dirs=(synth,), synth_ratio=1.0, progress=False)
    assert mixed.labels == plain.labels  # "hello" is no new label
    assert len(mixed.split("train")) > len(plain.split("train"))
    for split in ("validation", "test"):
        assert np.array_equal(mixed.split(split).labels, plain.split(split).labels)
    synthetic_rows = {mixed.cache.rows[c.rel] for c in mixed.index.clips if c.synthetic}
    assert len(synthetic_rows) == 12
    train_rows = set(mixed.split("train", np.random.default_rng(0)).rows.tolist())
    assert synthetic_rows & train_rows  # drawn into training
    assert not synthetic_rows & set(mixed.split("validation").rows.tolist())
    hello = {mixed.cache.rows[c.rel] for c in mixed.index.clips if c.word == "hello"}
    # non-command synthetic words are unknown speech, drawn with the synthetic share by default ...
    assert hello <= set(mixed._synth_unknown) and not hello & set(mixed._unknown_pool["train"])
    drawn = mixed.split("train", np.random.default_rng(0))
    unknown = mixed.labels.index("_unknown_")
    assert hello & set(drawn.rows[drawn.labels == unknown].tolist())
    # ... or pooled with the real unknown clips
    pooled = SpeechCommands(root, extra_dirs=(synth,), synth_ratio=1.0, synth_unknowns="pooled", progress=False)
    assert hello <= set(pooled._unknown_pool["train"]) and not pooled._synth_unknown
    # ... or, without any extra commands, as a share of their own beside the dataset's other words
    share = SpeechCommands(root, extra_dirs=(synth,), extra_unknown_ratio=0.25, progress=False)
    drawn = share.split("train", np.random.default_rng(0))
    n_commands = int((drawn.labels > unknown).sum())
    other = drawn.rows[drawn.labels == unknown].tolist()
    assert sum(r in hello for r in other) == min(len(hello), math.ceil(0.25 * n_commands))
    assert sum(r in set(share._unknown_pool["train"]) for r in other) == math.ceil(0.1 * n_commands)
    assert not synthetic_rows - hello & set(drawn.rows.tolist())  # no synthetic commands: synth_ratio is 0
    with pytest.raises(DataError):
        SpeechCommands(root, extra_dirs=(tmp_path / "nowhere",), progress=False)


def test_ema_and_mixup_train_and_save_the_average(fake_dataset, tmp_path):
    out = tmp_path / "m.pt"
    cfg = TrainConfig(epochs=2, batch_size=8, ema_decay=0.5, mixup_alpha=0.4, speed=0.1, reverb_prob=0.5)
    train(fake_dataset, out, cfg, FeatureConfig(), ModelConfig(hidden_size=16, num_layers=1), device="cpu",
          progress=False, max_steps=3)
    ck, state = load_checkpoint(out), torch.load(state_path(out), weights_only=True)
    assert ck.train == cfg and "ema" in state
    assert {"val_unknown_recall", "test_unknown_recall"} <= set(ck.metrics)
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    live = state["model_state"]
    if ck.metrics["best_epoch"] == 2:  # the saved weights are the average, not the raw weights
        key = "head.weight"
        assert torch.equal(ck.state_dict[key], ema[key]) and not torch.equal(ck.state_dict[key], live[key])


def test_cli_set_overrides_any_config_field(fake_dataset, tmp_path):
    from speechlstm.cli import main

    out = tmp_path / "m.pt"
    assert main(["train", "--data-dir", str(fake_dataset), "--out", str(out), "--epochs", "1", "--max-steps",
                 "1", "--batch-size", "8", "--quiet", "--device", "cpu", "--set", "model.conv_stride=4",
                 "--set", "model.hidden_size=8", "--set", "train.snr_db=[5, 10]", "--set", "model.pooling=meanmax",
                 "--set", "features.hop_ms=20"]) == 0
    ck = load_checkpoint(out)
    assert ck.model.conv_stride == 4 and ck.model.hidden_size == 8 and ck.model.pooling == "meanmax"
    assert ck.train.snr_db == (5, 10) and ck.features.hop_ms == 20
    assert main(["train", "--data-dir", str(fake_dataset), "--out", str(out), "--set", "model.nope=1"]) != 0


def test_more_data_joins_the_dataset_without_testing_speakers(tmp_path):
    root = make_fake_dataset(tmp_path / "sc")
    more = tmp_path / "more"
    for word in ("yes", "bird"):
        (more / word).mkdir(parents=True)
        for spk in ("00000001", "00000002", "00000003"):  # 00000002: the hash rule's testing split
            sf.write(more / word / f"{spk}_nohash_0.wav", word_tone(word, spk), SR, subtype="PCM_16")
    plain = SpeechCommands(root, progress=False)
    ds = SpeechCommands(root, more_dirs=(more,), progress=False)
    added = {c.rel for c in ds.index.clips if c.rel.startswith(str(more.resolve()))}
    assert len(added) == 4 and not any("00000002" in r for r in added)
    assert not any(c.synthetic for c in ds.index.clips)  # the dataset's own kind of clip
    bird = {ds.cache.rows[r] for r in added if "/bird/" in r}
    yes = {ds.cache.rows[r] for r in added if "/yes/" in r}
    assert bird <= set(ds._unknown_pool["train"])  # other words join the real unknown pool ...
    assert yes <= set(ds._known["train"][0])  # ... and commands the real training clips
    assert len(ds._known["train"][0]) == len(plain._known["train"][0]) + 2
    for split in ("validation", "test"):
        assert np.array_equal(ds.split(split).labels, plain.split(split).labels)
