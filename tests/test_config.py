import dataclasses

import pytest

from speechlstm.config import FeatureConfig, ModelConfig, from_dict, merge, to_dict
from speechlstm.pretrain import PretrainConfig
from speechlstm.train import TrainConfig
from speechlstm.errors import ConfigError


def test_unknown_keys_are_rejected_by_name():
    with pytest.raises(ConfigError, match="n_mfccs"):
        from_dict(FeatureConfig, {"n_mfccs": 13})


def test_round_trip_and_derived_sizes():
    f = FeatureConfig(hop_ms=20, win_ms=30)
    assert from_dict(FeatureConfig, to_dict(f)) == f
    assert (f.clip_samples, f.win_samples, f.hop_samples, f.n_fft, f.n_frames) == (16000, 480, 320, 512, 51)
    t = from_dict(TrainConfig, {"augment": {"snr_db": [5, 10]}})  # JSON lists come back as tuples
    assert t.augment.snr_db == (5, 10) and from_dict(TrainConfig, to_dict(t)) == t
    with pytest.raises(ConfigError, match="section"):
        from_dict(TrainConfig, {"augment": 3})
    assert merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}, "d": 1}


@pytest.mark.parametrize("bad", [dict(hop_ms=0), dict(f_max=9000), dict(n_mfcc=80), dict(norm="x")])
def test_invalid_feature_values(bad):
    with pytest.raises(ConfigError):
        FeatureConfig(**bad)


def test_invalid_model_and_train_values():
    with pytest.raises(ConfigError):
        ModelConfig(pooling="sum")
    with pytest.raises(ConfigError):
        TrainConfig(task="words36")


def test_a_partial_section_keeps_the_parents_defaults():
    """`--set pretrain.optim.seed=1` changes the seed alone: pretraining keeps its own 10 epochs
    and half-epoch warm-up (not OptimConfig's 60 and 1), and its augmentation keeps speed and
    shift off when only the noise is set."""
    cfg = PretrainConfig.from_dict({"optim": {"seed": 1}, "augment": {"noise_prob": 0.5}})
    assert cfg.optim == dataclasses.replace(PretrainConfig().optim, seed=1)
    assert cfg.augment == dataclasses.replace(PretrainConfig().augment, noise_prob=0.5)
    assert PretrainConfig.from_dict(dataclasses.asdict(cfg)) == cfg  # a full dict: exactly what it says
