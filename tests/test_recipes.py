"""Recipes: TOML files that make a model, stage by stage; the shipped models' recipes
describe the shipped files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from speechlstm.checkpoint import load_checkpoint
from speechlstm.errors import ConfigError
from speechlstm.recipes import Runner, configs, load_recipe, parse_assignments
from speechlstm.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent

TWO_STAGES = """
description = "two teachers and a student that learns their mean"
[vars]
data = "DATA"
[defaults.model]
hidden_size = 16
[defaults.train.optim]
epochs = 1
batch_size = 8

[[stage]]
name = "teacher"
seeds = [0, 1]
data_dir = "{data}"

[[stage]]
name = "student"
data_dir = "{data}"
teachers = ["{teacher}"]
[stage.train.distill]
weight = 0.5
"""


def _write(tmp_path, text, data="DATA"):
    path = tmp_path / "r.toml"
    path.write_text(text.replace("DATA", str(data)))
    return path


def _run(args, timeout=300):
    return subprocess.run([sys.executable, "-m", "speechlstm", "recipe", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_a_recipe_runs_its_stages_once_and_again_when_a_setting_changes(fake_dataset, tmp_path):
    recipe, out = _write(tmp_path, TWO_STAGES, fake_dataset), tmp_path / "runs"
    args = [str(recipe), "--out-dir", str(out), "--max-steps", "2", "--device", "cpu", "--quiet"]
    first = _run(args)
    assert first.returncode == 0, first.stderr
    teachers = [out / "teacher-s0.pt", out / "teacher-s1.pt"]
    student = load_checkpoint(out / "student.pt")
    assert student.provenance["teachers"] == [str(t.resolve()) for t in teachers]
    cfg = TrainConfig.from_dict(student.train)
    assert cfg.distill.weight == 0.5 and cfg.optim.batch_size == 8 and student.model.hidden_size == 16
    seeds = [TrainConfig.from_dict(load_checkpoint(t).train).optim.seed for t in teachers]
    assert seeds == [0, 1]
    made = {p: p.stat().st_mtime_ns for p in [*teachers, out / "student.pt"]}

    again = _run(args)  # the same settings: nothing is trained again
    assert again.returncode == 0 and again.stderr.count("skipped") == 3, again.stderr
    assert {p: p.stat().st_mtime_ns for p in made} == made

    changed = _run([*args, "--set", "train.optim.lr=1e-3"])  # a setting changed: every stage reruns
    assert changed.returncode == 0 and "skipped" not in changed.stderr, changed.stderr
    assert TrainConfig.from_dict(load_checkpoint(out / "student.pt").train).optim.lr == 1e-3
    state = json.loads((out / "recipe-state.json").read_text())
    assert set(state) == {str(p) for p in made}


@pytest.mark.parametrize("old, new, message", [
    ('name = "teacher"', 'name = "student"', "used twice"),
    ('teachers = ["{teacher}"]', 'teachers = ["{teachr}"]', "not a var or an earlier stage"),
    ("weight = 0.5", "weight = 1.5", "distill weight"),  # a bad value: refused before anything runs
    ("seeds = [0, 1]", 'seeds = [0, 1]\ncorpus = "x"', "unknown key"),  # a pretrain input in a train stage
])
def test_bad_recipes_are_refused_when_read(tmp_path, old, new, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(_write(tmp_path, TWO_STAGES.replace(old, new)))


def test_recipe_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="no such recipe"):
        load_recipe(tmp_path / "none.toml")
    with pytest.raises(ConfigError, match="not a valid TOML"):
        load_recipe(_write(tmp_path, "[[stage]\n"))
    with pytest.raises(ConfigError, match="at least one"):
        load_recipe(_write(tmp_path, 'description = "x"\n'))
    recipe = load_recipe(_write(tmp_path, TWO_STAGES))
    with pytest.raises(ConfigError, match="several seeds"):  # two files where one is wanted
        Runner(recipe, tmp_path).resolve("{teacher}")
    assert parse_assignments(["train.optim.lr=1e-3", "model.pooling=meanmax"], "--set") == \
        {"train": {"optim": {"lr": 1e-3}}, "model": {"pooling": "meanmax"}}
    done = _run([str(tmp_path / "r.toml"), "--out-dir", str(tmp_path / "o"), "--set", "train.optim.epochs=0"])
    assert done.returncode == 2 and "epochs" in done.stderr and "Traceback" not in done.stderr


def test_the_shipped_recipes_describe_the_shipped_models():
    """Each shipped checkpoint was made with its recipe's settings (the last training stage's)."""
    for recipe_name, model_name, stage in (("commands12", "commands12.pt", "finetune"),
                                           ("embedder", "embedder.pt", "embedder-words")):
        recipe = load_recipe(ROOT / "recipes" / f"{recipe_name}.toml")
        shipped = load_checkpoint(ROOT / "checkpoints" / model_name)
        seed = TrainConfig.from_dict(shipped.train).optim.seed  # a stage of several seeds: the one kept
        assert recipe.stage(stage).seeds is None or seed in recipe.stage(stage).seeds
        made = configs(recipe.stage(stage), seed if recipe.stage(stage).seeds else None)
        assert made["features"] == shipped.features, recipe_name
        assert made["model"] == shipped.model, recipe_name
        assert made["train"] == TrainConfig.from_dict(shipped.train), recipe_name
    shipped = load_recipe(ROOT / "recipes" / "commands12.toml")
    assert [s.kind for s in shipped.stages] == ["pretrain", "train", "train", "train", "train", "calibrate"]


def test_a_calibrate_stage_keeps_the_candidate_best_on_validation(tmp_path):
    """Several checkpoints: each one's rule is calibrated, the best on the validation recordings is kept."""
    import numpy as np
    import soundfile as sf
    import torch

    from conftest import EXAMPLES
    from speechlstm.audio import read_audio
    from speechlstm.checkpoint import DEFAULT_CHECKPOINT, save_checkpoint
    from speechlstm.stream_make import Event, write_truth

    rng = np.random.default_rng(1)
    audio = 0.003 * rng.standard_normal(16000 * 10).astype(np.float32)
    truth = []
    for i, word in enumerate(["left", "stop", "up", "go"]):
        x, _ = read_audio(next(EXAMPLES.glob(f"{word}_*.wav")), 16000)
        at = 16000 * (1 + 2 * i)
        audio[at : at + len(x)] += x
        truth.append(Event(word, 1000.0 * at / 16000))
    sf.write(tmp_path / "val.wav", audio, 16000)
    write_truth(truth, tmp_path / "val.csv")
    deaf = load_checkpoint(DEFAULT_CHECKPOINT)  # hears nothing: its head only ever says _silence_
    deaf.state_dict = {k: (torch.zeros_like(v) if k.startswith("head.") else v) for k, v in deaf.state_dict.items()}
    deaf.state_dict["head.bias"][deaf.labels.index("_silence_")] = 10.0
    save_checkpoint(deaf, tmp_path / "deaf.pt")
    recipe = _write(tmp_path, f"""
[[stage]]
name = "chosen"
kind = "calibrate"
checkpoint = ["{tmp_path / 'deaf.pt'}", "{DEFAULT_CHECKPOINT}"]
audio = ["{tmp_path / 'val.wav'}"]
labels = ["{tmp_path / 'val.csv'}"]
""")
    done = _run([str(recipe), "--out-dir", str(tmp_path / "out"), "--quiet"], timeout=600)
    assert done.returncode == 0, done.stderr
    chosen = load_checkpoint(tmp_path / "out" / "chosen.pt")
    good = load_checkpoint(DEFAULT_CHECKPOINT)
    assert all(torch.equal(chosen.state_dict[k], good.state_dict[k]) for k in good.state_dict)
    assert chosen.metrics["stream_calibration"]["correct_pct"] == 100.0
    assert chosen.provenance["chosen_on_validation_from"] == [str(tmp_path / "deaf.pt"),
                                                              str(DEFAULT_CHECKPOINT)]
    assert load_checkpoint(tmp_path / "out" / "chosen.deaf.pt").metrics["stream_calibration"]["correct_pct"] == 0.0
