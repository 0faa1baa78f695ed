import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from speechlstm.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from speechlstm.config import FeatureConfig, ModelConfig, to_dict
from speechlstm.errors import CheckpointError, ConfigError
from speechlstm.infer import Recognizer
from speechlstm.model import KeywordBiLSTM
from speechlstm.pretrain import PretrainConfig
from speechlstm.train import TrainConfig

LABELS = ["_silence_", "_unknown_", "yes", "no"]


def _checkpoint(tmp_path):
    torch.manual_seed(0)
    fc, mc = FeatureConfig(n_mfcc=20, n_mels=32), ModelConfig(hidden_size=32, num_layers=1)
    net = KeywordBiLSTM(fc, mc, len(LABELS)).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(Checkpoint(fc, mc, to_dict(TrainConfig()), LABELS, net.state_dict(), {"val_acc": 0.5},
                               {"seed": 0}), path)
    return net, path


def test_round_trip_gives_identical_logits(tmp_path):
    net, path = _checkpoint(tmp_path)
    wave = 0.1 * torch.randn(3, 16000)
    ckpt = load_checkpoint(path)
    assert ckpt.labels == LABELS and ckpt.features.n_mfcc == 20 and ckpt.metrics["val_acc"] == 0.5
    with torch.no_grad():
        assert torch.equal(net(wave), ckpt.build_model()(wave))
    # plain torch.load with weights_only works: the format holds no code
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "speechlstm" and raw["version"] == 2
    rec = Recognizer.from_checkpoint(path, device="cpu")
    assert rec.labels == LABELS and rec.sample_rate == 16000


def test_truncated_and_garbage_files_give_clear_errors(tmp_path):
    _, path = _checkpoint(tmp_path)
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "empty.pt").write_bytes(b"")
    for name, msg in (("trunc.pt", "corrupt or truncated"), ("junk.pt", "corrupt|refused"),
                      ("empty.pt", "empty"), ("missing.pt", "no such checkpoint")):
        with pytest.raises(CheckpointError, match=msg):
            load_checkpoint(tmp_path / name)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickled_code_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": "speechlstm", "version": 1, "evil": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
    with open(tmp_path / "plain.pkl", "wb") as f:  # a bare pickle, not a torch zip
        pickle.dump(_Payload(), f)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "plain.pkl")
    assert not (tmp_path / "pwned").exists()


def test_wrong_format_version_and_config_are_named(tmp_path):
    _, path = _checkpoint(tmp_path)
    raw = torch.load(path, weights_only=True)
    cases = {
        "other.pt": ({"state_dict": {}}, "not a speechlstm checkpoint"),
        "v99.pt": ({**raw, "version": 99}, "version 99"),
        "keys.pt": ({**raw, "features": {**raw["features"], "bogus": 1}}, "bogus"),
        "weights.pt": ({**raw, "labels": raw["labels"] + ["extra"]}, "do not fit"),
    }
    for name, (obj, msg) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(CheckpointError, match=msg):
            load_checkpoint(tmp_path / name).build_model()


def test_a_checkpoint_trained_with_a_retired_setting_still_loads(tmp_path):
    """Settings of ideas that were measured and not kept leave TrainConfig; files that
    carry them load, keep them in their provenance, and predict as before."""
    net, path = _checkpoint(tmp_path)
    raw = torch.load(path, weights_only=True)
    torch.save({**raw, "train": {**raw["train"], "extra_hard_share": 0.5}}, tmp_path / "old.pt")
    ckpt = load_checkpoint(tmp_path / "old.pt")
    assert ckpt.provenance["retired"] == {"extra_hard_share": 0.5}
    assert TrainConfig.from_dict(ckpt.train) == TrainConfig()
    raw2 = {**raw, "train": {**raw["train"], "windows": {"talk_ratio": 0.5, "join_prob": 0.2}}}
    torch.save(raw2, tmp_path / "v2.pt")  # a version 2 file written before an idea retired
    ckpt = load_checkpoint(tmp_path / "v2.pt")
    assert ckpt.provenance["retired"] == {"windows.join_prob": 0.2}
    assert TrainConfig.from_dict(ckpt.train).windows.talk_ratio == 0.5
    x = torch.randn(2, ckpt.features.clip_samples)
    with torch.inference_mode():
        assert torch.allclose(ckpt.build_model()(x), net(x))
    torch.save({**raw, "train": {**raw["train"], "bogus": 1}}, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="bogus"):  # unknown keys are still refused by the config
        TrainConfig.from_dict(load_checkpoint(tmp_path / "bad.pt").train)


# A version 1 file's training settings: one flat section (what the first shipped models carried)
V1_TRAIN = {"task": "commands12", "epochs": 10, "batch_size": 64, "lr": 0.001, "weight_decay": 0.01,
            "warmup_epochs": 0.5, "label_smoothing": 0.1, "patience": 60, "seed": 2, "silence_ratio": 0.1,
            "unknown_ratio": 0.1, "synth_ratio": 0.0, "synth_unknowns": "separate", "extra_unknown_ratio": 0.3,
            "ema_decay": 0.0, "mixup_alpha": 0.0, "noise_prob": 0.8, "snr_db": [0.0, 20.0], "shift_ms": 100.0,
            "gain_db": 6.0, "speed": 0.1, "reverb_prob": 0.0, "reverb_rt60_s": [0.1, 0.6], "stream_place_prob": 0.0,
            "stream_cut_prob": 0.25, "stream_context_prob": 0.0, "keep_fraction": 0.85, "unknown_fraction": 0.5,
            "join_prob": 0.0, "talk_ratio": 0.5, "talk_hard_share": 0.5, "mine_min_score": 0.3,
            "distill_weight": 0.5, "distill_temperature": 2.0, "time_masks": 2, "time_mask_frames": 10,
            "freq_masks": 2, "freq_mask_bins": 5, "extra_hard_share": 0.0}


def test_a_version_1_checkpoint_loads_into_todays_sections(tmp_path):
    net, path = _checkpoint(tmp_path)
    raw = torch.load(path, weights_only=True)
    torch.save({**raw, "version": 1, "train": V1_TRAIN}, tmp_path / "v1.pt")
    ckpt = load_checkpoint(tmp_path / "v1.pt")
    cfg = TrainConfig.from_dict(ckpt.train)
    assert (cfg.optim.seed, cfg.optim.lr, cfg.sampling.extra_unknown_ratio, cfg.windows.talk_ratio,
            cfg.mining.share, cfg.distill.weight) == (2, 0.001, 0.3, 0.5, 0.5, 0.5)
    retired = ckpt.provenance["retired"]  # settings of ideas measured and not kept: kept as the file had them
    assert retired["windows.cut_prob"] == 0.25 and retired["extra_hard_share"] == 0.0
    assert {"optim.ema_decay", "augment.reverb_prob", "sampling.synth_unknowns", "windows.join_prob"} <= set(retired)
    x = torch.randn(2, ckpt.features.clip_samples)
    with torch.inference_mode():
        assert torch.equal(ckpt.build_model()(x), net(x))
    save_checkpoint(ckpt, tmp_path / "v2.pt")  # saved again: today's version, the same settings
    assert torch.load(tmp_path / "v2.pt", weights_only=True)["version"] == 2
    assert TrainConfig.from_dict(load_checkpoint(tmp_path / "v2.pt").train) == cfg
    torch.save({**raw, "version": 1, "train": {**V1_TRAIN, "bogus": 1}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bogus"):
        load_checkpoint(tmp_path / "bad.pt")


def test_the_shipped_models_load_with_their_settings():
    ckpt = load_checkpoint(Path(__file__).parent.parent / "checkpoints" / "commands12.pt")
    cfg = TrainConfig.from_dict(ckpt.train)
    assert cfg.task == "commands12" and cfg.augment.speed == 0.1 and cfg.windows.talk_ratio > 0  # read speech too
    assert PretrainConfig().augment.speed == 0.0 and PretrainConfig().augment.shift_ms == 0.0


def test_save_is_atomic(tmp_path, monkeypatch):
    net, path = _checkpoint(tmp_path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # crash mid-save

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(load_checkpoint(path), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_any_random_bytes_give_a_checkpoint_error(tmp_path):
    """Random files drive torch's legacy unpickler into KeyError, IndexError and more
    (seeds 0-299: 23 of them did before every failure became a CheckpointError)."""
    path = tmp_path / "junk.pt"
    for seed in range(300):
        path.write_bytes(np.random.default_rng(seed).bytes(4096))
        with pytest.raises(CheckpointError, match="corrupt|refused"):
            load_checkpoint(path)
