import csv
import signal
import subprocess
import sys
import time

import pytest
import torch

from speechlstm.checkpoint import load_checkpoint
from speechlstm.config import FeatureConfig, ModelConfig
from speechlstm.errors import ConfigError
from speechlstm.infer import Recognizer
from speechlstm.loop import OptimConfig
from speechlstm.train import TrainConfig, metrics_path, state_path, train

SMALL = ModelConfig(hidden_size=16, num_layers=1)


def _run(root, out, epochs, resume=False, seed=0):
    return train(root, out, TrainConfig(optim=OptimConfig(epochs=epochs, batch_size=8, seed=seed)), FeatureConfig(), SMALL,
                 device="cpu", resume=resume, progress=False, max_steps=2)


def test_two_step_smoke_run_writes_a_loadable_checkpoint(fake_dataset, tmp_path):
    out = tmp_path / "run" / "model.pt"
    result = _run(fake_dataset, out, epochs=1)
    ckpt = load_checkpoint(out)
    assert ckpt.labels[:2] == ["_silence_", "_unknown_"] and ckpt.model == SMALL
    assert {"val_acc", "test_acc", "best_epoch"} <= set(ckpt.metrics)
    prov = ckpt.provenance
    assert prov["seed"] == 0 and prov["split_sizes"]["train"] > 0 and prov["data_dir"].endswith("sc")
    rows = list(csv.DictReader(metrics_path(out).open()))
    assert len(rows) == 1 and 0 <= float(rows[0]["val_acc"]) <= 1
    assert result.best_epoch == 1
    pred = Recognizer.from_checkpoint(out, device="cpu").predict_file(fake_dataset / "yes" / next(
        p.name for p in (fake_dataset / "yes").iterdir()))
    assert pred.label in ckpt.labels


def _weights(out):
    return torch.load(state_path(out), weights_only=True)["model_state"]


def test_same_seed_same_weights_other_seed_differs(fake_dataset, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        _run(fake_dataset, tmp_path / f"{name}.pt", epochs=2, seed=seed)
    a, b, c = (_weights(tmp_path / f"{n}.pt") for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_fine_tuning_starts_from_the_checkpoint(fake_dataset, tmp_path):
    _run(fake_dataset, tmp_path / "a.pt", epochs=1)
    start = load_checkpoint(tmp_path / "a.pt").state_dict
    # a step so small that the weights stay where they started: from the checkpoint, not a new draw
    train(fake_dataset, tmp_path / "b.pt", TrainConfig(optim=OptimConfig(epochs=1, batch_size=8, seed=1, lr=1e-9)),
          FeatureConfig(), SMALL, device="cpu", progress=False, max_steps=2, init_from=tmp_path / "a.pt")
    tuned = load_checkpoint(tmp_path / "b.pt")
    assert tuned.provenance["init_from"] == str((tmp_path / "a.pt").resolve())
    for k in ("lstm.weight_ih_l0", "lstm.weight_hh_l0_reverse", "head.weight"):
        assert k in start and torch.allclose(tuned.state_dict[k], start[k], atol=1e-6)
    with pytest.raises(ConfigError, match="other feature/model settings"):
        train(fake_dataset, tmp_path / "c.pt", TrainConfig(optim=OptimConfig(epochs=1)), FeatureConfig(),
              ModelConfig(hidden_size=8),
              device="cpu", progress=False, max_steps=1, init_from=tmp_path / "a.pt")


def test_sigkill_then_resume_replays_the_uninterrupted_run(fake_dataset, tmp_path):
    """Kill a real training process mid-run; --resume must end where an
    uninterrupted run ends, bit for bit (every epoch's randomness is seeded)."""
    epochs = 4
    args = ["--data-dir", str(fake_dataset), "--epochs", str(epochs), "--set", "train.optim.batch_size=8",
            "--max-steps", "3", "--set", "model.hidden_size=16", "--device", "cpu", "--quiet"]
    killed = tmp_path / "killed.pt"
    proc = subprocess.Popen([sys.executable, "-m", "speechlstm", "train", "--out", str(killed), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if state_path(killed).exists():
            break  # the first epoch's state is saved
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = torch.load(state_path(killed), weights_only=True)["epoch"]
    assert 1 <= done_before < epochs, "the kill came too late to test anything"
    resumed = subprocess.run([sys.executable, "-m", "speechlstm", "train", "--out", str(killed), *args,
                              "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {done_before}" in resumed.stdout
    full = tmp_path / "full.pt"
    subprocess.run([sys.executable, "-m", "speechlstm", "train", "--out", str(full), *args],
                   check=True, capture_output=True, timeout=300)
    a, b = _weights(killed), _weights(full)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [int(r["epoch"]) for r in csv.DictReader(metrics_path(killed).open())] == list(range(1, epochs + 1))
    assert load_checkpoint(killed).metrics["best_epoch"] == load_checkpoint(full).metrics["best_epoch"]


def test_cli_train_and_predict(fake_dataset, tmp_path):
    out = tmp_path / "cli.pt"
    cmd = [sys.executable, "-m", "speechlstm", "train", "--data-dir", str(fake_dataset), "--out", str(out),
           "--epochs", "1", "--set", "train.optim.batch_size=8", "--set", "model.hidden_size=16",
           "--max-steps", "2", "--device", "cpu", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert out.is_file() and "test acc" in done.stdout
