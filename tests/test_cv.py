"""Speaker k-fold cross-validation: the folds, and a recipe run over them."""

import json
import subprocess
import sys

import pytest

from conftest import make_fake_dataset
from speechlstm.checkpoint import load_checkpoint
from speechlstm.cv import cross_validate, summarize
from speechlstm.data import SamplingConfig, SpeechCommands, SpeechCommandsIndex, hash_split, speaker_fold, speaker_id
from speechlstm.errors import ConfigError
from speechlstm.train import TrainConfig
from test_recipes import TWO_STAGES, _write


def test_every_dev_speaker_is_validated_in_exactly_one_fold_and_test_stays(tmp_path):
    root = make_fake_dataset(tmp_path / "sc", speakers=10)
    plain = SpeechCommandsIndex.scan(root)
    test = {c.rel for c in plain.clips if c.split == "test"}
    seen = {}
    for k in range(3):
        index = SpeechCommandsIndex.scan(root)
        index.with_folds(3, k)
        assert {c.rel for c in index.clips if c.split == "test"} == test
        val = {speaker_id(c.rel) for c in index.clips if c.split == "validation"}
        train = {speaker_id(c.rel) for c in index.clips if c.split == "train"}
        assert val and train and not val & train  # speakers never cross
        for s in val:
            assert s not in seen, (s, seen[s], k)
            seen[s] = k
    assert set(seen) == {speaker_id(c.rel) for c in plain.clips if c.rel not in test}


def test_folds_are_checked_and_reach_the_splits(tmp_path):
    for bad in ({"folds": 1}, {"folds": 3, "fold": 3}, {"folds": -2}, {"folds": 2, "fold": -1}):
        with pytest.raises(ConfigError, match="folds"):
            SamplingConfig(**bad)
    root = make_fake_dataset(tmp_path / "sc", speakers=10)
    ds = [SpeechCommands(root, sampling=SamplingConfig(folds=2, fold=k), progress=False) for k in (0, 1)]
    sizes = [len(d._known["validation"][0]) for d in ds]
    assert sum(sizes) == len(ds[0]._known["validation"][0]) + len(ds[0]._known["train"][0])


def test_summary_is_the_mean_spread_and_range():
    s = summarize([{"val_acc": 0.9, "best_epoch": 3}, {"val_acc": 0.8, "best_epoch": 5}])
    assert s["val_acc"] == {"mean": 0.85, "sd": 0.0707, "min": 0.8, "max": 0.9, "n": 2}
    assert s["best_epoch"]["mean"] == 4.0 and "val_unknown_recall" not in s


def test_cross_validate_runs_the_recipe_once_a_fold_and_resumes(tmp_path):
    root = make_fake_dataset(tmp_path / "sc", speakers=10)
    recipe = _write(tmp_path, TWO_STAGES, root)  # two teachers and a student: the student's figures count
    logs = []
    result = cross_validate(recipe, tmp_path / "cv", folds=2, device="cpu", progress=False, max_steps=2,
                            log=logs.append)
    assert [r["fold"] for r in result["rows"]] == [0, 1]
    for r in result["rows"]:
        sampling = TrainConfig.from_dict(load_checkpoint(r["file"]).train).sampling
        assert (sampling.folds, sampling.fold) == (2, r["fold"])  # each checkpoint says which fold it held out
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["summary"] == result["summary"]
    assert 0.0 <= result["summary"]["val_acc"]["mean"] <= 1.0
    again = subprocess.run([sys.executable, "-m", "speechlstm", "cv", str(recipe), "--folds", "2", "--out-dir",
                            str(tmp_path / "cv"), "--device", "cpu", "--max-steps", "2", "--quiet"],
                           capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("is done (same settings); skipped") == 2 * 3  # both folds, every stage, were done
    assert again.stdout.startswith("val_acc: ")
    with pytest.raises(ConfigError, match="at least 2 folds"):
        cross_validate(recipe, tmp_path / "cv1", folds=1)


def test_a_recipe_that_trains_on_every_dev_speaker_is_cross_validated_as_it_stands(tmp_path):
    """The shipped recipe sets dev_all and keep = "last"; its folds hold speakers out and keep their best."""
    root = make_fake_dataset(tmp_path / "sc", speakers=10)
    text = TWO_STAGES.replace("batch_size = 8", 'batch_size = 8\nkeep = "last"\n[defaults.train.sampling]\ndev_all = true')
    recipe = _write(tmp_path, text, root)
    result = cross_validate(recipe, tmp_path / "cv", folds=2, device="cpu", progress=False, max_steps=2,
                            log=lambda _: None)
    assert [r["fold"] for r in result["rows"]] == [0, 1]
    for r in result["rows"]:
        train = TrainConfig.from_dict(load_checkpoint(r["file"]).train)
        assert (train.sampling.folds, train.sampling.fold, train.sampling.dev_all) == (2, r["fold"], False)
        assert train.optim.keep == "best"


def test_more_data_trains_in_every_fold_but_never_as_a_held_out_speaker(tmp_path):
    import soundfile as sf

    from conftest import SR, word_tone

    root = make_fake_dataset(tmp_path / "sc", speakers=10)
    more = tmp_path / "more"
    (more / "yes").mkdir(parents=True)
    speakers = [f"{i:08x}" for i in range(1, 40) if hash_split(f"yes/{i:08x}_nohash_0.wav") != "test"]
    for spk in speakers:
        sf.write(more / "yes" / f"{spk}_nohash_0.wav", word_tone("yes", spk), SR, subtype="PCM_16")
    for k in range(2):
        plain, index = SpeechCommandsIndex.scan(root), SpeechCommandsIndex.scan(root)
        plain.with_folds(2, k)
        index.add_training_dir(more, same_dataset=True)
        index.with_folds(2, k)
        val = [c.rel for c in index.clips if c.split == "validation"]
        assert val == [c.rel for c in plain.clips if c.split == "validation"]  # the same clips with or without
        added = {speaker_id(c.rel) for c in index.clips if c.more}
        assert added and added == {s for s in speakers if speaker_fold(s + "_nohash_0.wav", 2) != k}
        assert all(c.split == "train" for c in index.clips if c.more)


def test_dev_all_trains_on_the_validation_speakers_too_and_keeps_the_last_epoch(tmp_path):
    import csv

    from speechlstm.config import FeatureConfig, ModelConfig
    from speechlstm.loop import OptimConfig
    from speechlstm.train import metrics_path, train

    root = make_fake_dataset(tmp_path / "sc", speakers=10)
    plain = SpeechCommands(root, progress=False)
    every = SpeechCommands(root, sampling=SamplingConfig(dev_all=True), progress=False)
    train_rows, val_rows = set(plain._known["train"][0]), set(plain._known["validation"][0])
    assert set(every._known["train"][0]) == train_rows | val_rows  # the validation list joins training
    assert every._known["validation"] == plain._known["validation"] and every._known["test"] == plain._known["test"]
    with pytest.raises(ConfigError, match="dev_all"):
        SamplingConfig(dev_all=True, folds=3)
    with pytest.raises(ConfigError, match='keep = "last"'):  # the best epoch on trained-on clips means nothing
        TrainConfig(sampling=SamplingConfig(dev_all=True))
    with pytest.raises(ConfigError, match="keep"):
        OptimConfig(keep="first")
    cfg = TrainConfig(optim=OptimConfig(epochs=3, batch_size=8, keep="last"), sampling=SamplingConfig(dev_all=True))
    out = tmp_path / "all.pt"
    result = train(root, out, cfg, FeatureConfig(), ModelConfig(hidden_size=16), device="cpu", progress=False,
                   max_steps=2)
    assert result.best_epoch == 3 and load_checkpoint(out).metrics["best_epoch"] == 3  # the last, whatever it scored
    assert len(list(csv.DictReader(metrics_path(out).open()))) == 3
    assert TrainConfig.from_dict(load_checkpoint(out).train).sampling.dev_all  # the file says how it was made
