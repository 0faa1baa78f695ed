"""Augmentations and the training options the ablations use: speed
perturbation, mixup, the unknown ratio, the --set overrides and extra data."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import SR, make_fake_dataset, word_tone
from speechlstm.augment import AugmentConfig, Augmenter
from speechlstm.checkpoint import load_checkpoint
from speechlstm.config import FeatureConfig, ModelConfig
from speechlstm.data import EVAL_UNKNOWN_RATIO, SamplingConfig, SpeechCommands
from speechlstm.errors import ConfigError, DataError
from speechlstm.loop import OptimConfig
from speechlstm.train import TrainConfig, train

QUIET = dict(noise_prob=0.0, shift_ms=0.0, gain_db=0.0, speed=0.0)


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * SR / len(x))


def test_speed_perturbation_scales_pitch_and_spares_skipped_rows():
    aug = Augmenter(AugmentConfig(**{**QUIET, "speed": 0.2}), FeatureConfig(), noise=[])
    t = np.arange(SR) / SR
    tone = torch.tensor(0.5 * np.sin(2 * np.pi * 1000 * t), dtype=torch.float32).repeat(64, 1)
    skip = torch.zeros(64, dtype=torch.bool)
    skip[0] = True
    out = aug.wave(tone, torch.Generator().manual_seed(0), skip=skip)
    assert torch.equal(out[0], tone[0])  # silence rows are never touched
    peaks = np.array([_peak_hz(out[i, 4000:12000].numpy()) for i in range(1, 64)])
    assert peaks.min() >= 790 and peaks.max() <= 1210  # rates within [0.8, 1.2]
    assert peaks.max() - peaks.min() > 150  # and really spread over that range


def test_config_rejects_out_of_range_augmentation():
    for section, bad in ((AugmentConfig, dict(speed=0.7)), (OptimConfig, dict(lr=0.0)),
                         (SamplingConfig, dict(unknown_ratio=-1)), (AugmentConfig, dict(snr_db=(20.0, 0.0)))):
        with pytest.raises(ConfigError):
            section(**bad)
    with pytest.raises(ConfigError, match="known keys"):  # a flat key of the old layout names the sections
        TrainConfig.from_dict({"speed": 0.1})


def test_unknown_ratio_changes_training_only(tmp_path):
    root = make_fake_dataset(tmp_path / "sc", speakers=10)
    few = SpeechCommands(root, sampling=SamplingConfig(unknown_ratio=0.1), progress=False)
    many = SpeechCommands(root, sampling=SamplingConfig(unknown_ratio=1.0), progress=False)
    n_unknown = lambda d, split: int((d.split(split).labels == d.labels.index("_unknown_")).sum())
    assert n_unknown(many, "train") > n_unknown(few, "train")
    for split in ("validation", "test"):  # the evaluation protocol never moves
        assert n_unknown(many, split) == n_unknown(few, split)
        assert len(many.split(split)) == len(few.split(split))
    assert EVAL_UNKNOWN_RATIO == 0.1
    oov = many.unknown_set("validation")  # every OOV clip of the split, for the open-set rate
    assert len(oov) == 3 and (oov.labels == many.labels.index("_unknown_")).all()
    # a share larger than the pool draws all of it, and says so: more would change nothing
    pool = len(many.unknown_set("train"))
    assert n_unknown(many, "train") == pool == n_unknown(
        SpeechCommands(root, sampling=SamplingConfig(unknown_ratio=2.0), progress=False), "train")
    assert few.capped_shares() == []
    (note,) = many.capped_shares()
    assert note.startswith("train.sampling.unknown_ratio 1 asks") and note.endswith(f"are {pool}: every one is drawn")


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
    mixed = SpeechCommands(root, extra_dirs=(synth,), sampling=SamplingConfig(synth_ratio=1.0), progress=False)
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
    # non-command synthetic words are unknown speech, drawn with the synthetic share ...
    assert hello <= set(mixed._synth_unknown) and not hello & set(mixed._unknown_pool["train"])
    drawn = mixed.split("train", np.random.default_rng(0))
    unknown = mixed.labels.index("_unknown_")
    assert hello & set(drawn.rows[drawn.labels == unknown].tolist())
    # ... or, without any extra commands, as a share of their own beside the dataset's other words
    share = SpeechCommands(root, extra_dirs=(synth,), sampling=SamplingConfig(extra_unknown_ratio=0.25),
                           progress=False)
    drawn = share.split("train", np.random.default_rng(0))
    n_commands = int((drawn.labels > unknown).sum())
    other = drawn.rows[drawn.labels == unknown].tolist()
    assert sum(r in hello for r in other) == min(len(hello), math.ceil(0.25 * n_commands))
    assert sum(r in set(share._unknown_pool["train"]) for r in other) == math.ceil(0.1 * n_commands)
    assert not synthetic_rows - hello & set(drawn.rows.tolist())  # no synthetic commands: synth_ratio is 0
    with pytest.raises(DataError):
        SpeechCommands(root, extra_dirs=(tmp_path / "nowhere",), progress=False)


def test_mixup_trains_and_is_saved(fake_dataset, tmp_path):
    out = tmp_path / "m.pt"
    cfg = TrainConfig(optim=OptimConfig(epochs=2, batch_size=8), augment=AugmentConfig(mixup_alpha=0.4, speed=0.1))
    train(fake_dataset, out, cfg, FeatureConfig(), ModelConfig(hidden_size=16, num_layers=1), device="cpu",
          progress=False, max_steps=3)
    ck = load_checkpoint(out)
    assert TrainConfig.from_dict(ck.train) == cfg
    assert {"val_unknown_recall", "test_unknown_recall"} <= set(ck.metrics)
    aug = Augmenter(cfg.augment, FeatureConfig(), noise=[])
    wave, y = torch.randn(8, SR), torch.arange(8)
    mixed, partner, lam = aug.mixup(wave, y, np.random.default_rng(0), torch.Generator().manual_seed(0))
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    assert 0 < lam < 1 and torch.equal(partner, y[perm])
    assert torch.allclose(mixed, lam * wave + (1 - lam) * wave[perm])
    same, labels, lam = Augmenter(AugmentConfig(), FeatureConfig(), noise=[]).mixup(wave, y, None, None)
    assert same is wave and labels is y and lam == 1.0  # mixup off: the batch as it was


def test_cli_set_overrides_any_config_field(fake_dataset, tmp_path):
    from speechlstm.cli import main

    out = tmp_path / "m.pt"
    assert main(["train", "--data-dir", str(fake_dataset), "--out", str(out), "--epochs", "1", "--max-steps",
                 "1", "--set", "train.optim.batch_size=8", "--quiet", "--device", "cpu", "--set", "model.conv_stride=4",
                 "--set", "model.hidden_size=8", "--set", "train.augment.snr_db=[5, 10]", "--set", "model.pooling=meanmax",
                 "--set", "features.hop_ms=20"]) == 0
    ck = load_checkpoint(out)
    assert ck.model.conv_stride == 4 and ck.model.hidden_size == 8 and ck.model.pooling == "meanmax"
    assert TrainConfig.from_dict(ck.train).augment.snr_db == (5, 10) and ck.features.hop_ms == 20
    assert main(["train", "--data-dir", str(fake_dataset), "--out", str(out), "--set", "model.nope=1"]) != 0


def test_more_data_joins_the_dataset_without_testing_speakers(tmp_path):
    root = make_fake_dataset(tmp_path / "sc")
    more = tmp_path / "more"
    for word in ("yes", "bird"):
        (more / word).mkdir(parents=True)
        for spk in ("00000001", "00000002", "00000003"):  # 00000002: the hash rule's testing split
            sf.write(more / word / f"{spk}_nohash_0.wav", word_tone(word, spk), SR, subtype="PCM_16")
            (more / word / f"._{spk}_nohash_0.wav").write_bytes(b"\x00\x05\x16\x07" + bytes(4092))  # macOS metadata
    plain = SpeechCommands(root, progress=False)
    ds = SpeechCommands(root, more_dirs=(more,), progress=False)
    added = {c.rel for c in ds.index.clips if c.rel.startswith(str(more.resolve()))}
    assert len(added) == 4 and not any("00000002" in r or "/._" in r for r in added)
    assert ds.skipped == []  # the ._ files are not audio, and not tried as audio
    assert not any(c.synthetic for c in ds.index.clips)  # the dataset's own kind of clip
    bird = {ds.cache.rows[r] for r in added if "/bird/" in r}
    yes = {ds.cache.rows[r] for r in added if "/yes/" in r}
    assert bird <= set(ds._unknown_pool["train"])  # other words join the real unknown pool ...
    assert yes <= set(ds._known["train"][0])  # ... and commands the real training clips
    assert len(ds._known["train"][0]) == len(plain._known["train"][0]) + 2
    for split in ("validation", "test"):
        assert np.array_equal(ds.split(split).labels, plain.split(split).labels)
