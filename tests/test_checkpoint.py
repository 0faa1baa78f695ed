import os
import pickle

import numpy as np
import pytest
import torch

from speechlstm.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from speechlstm.config import FeatureConfig, ModelConfig, TrainConfig
from speechlstm.errors import CheckpointError
from speechlstm.infer import Recognizer
from speechlstm.model import KeywordBiLSTM

LABELS = ["_silence_", "_unknown_", "yes", "no"]


def _checkpoint(tmp_path):
    torch.manual_seed(0)
    fc, mc = FeatureConfig(n_mfcc=20, n_mels=32), ModelConfig(hidden_size=32, num_layers=1)
    net = KeywordBiLSTM(fc, mc, len(LABELS)).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(Checkpoint(fc, mc, TrainConfig(), LABELS, net.state_dict(), {"val_acc": 0.5},
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
    assert raw["format"] == "speechlstm" and raw["version"] == 1
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
    assert ckpt.provenance["retired"] == {"extra_hard_share": 0.5} and ckpt.train == TrainConfig()
    x = torch.randn(2, ckpt.features.clip_samples)
    with torch.inference_mode():
        assert torch.allclose(ckpt.build_model()(x), net(x))
    with pytest.raises(CheckpointError, match="bogus"):  # unknown keys are still refused
        torch.save({**raw, "train": {**raw["train"], "bogus": 1}}, tmp_path / "bad.pt")
        load_checkpoint(tmp_path / "bad.pt")


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
