"""speechlstm wordset: more speakers' commands and aligned read words in one folder of word
classes, and a commands model started from the encoder of a classifier trained on it."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import FAKE_WORDS, SR, make_fake_dataset, word_tone
from speechlstm.checkpoint import load_checkpoint
from speechlstm.cli import main
from speechlstm.config import FeatureConfig, ModelConfig
from speechlstm.data import SpeechCommandsIndex, hash_split, speaker_id
from speechlstm.errors import DataError
from speechlstm.loop import OptimConfig
from speechlstm.train import TrainConfig, train
from speechlstm.wordset import build_wordset

SMALL = ModelConfig(hidden_size=16, num_layers=1)


def _corpus(root, counts):
    """A `speechlstm corpus` output: word/<speaker>_nohash_<utterance>_<n>.wav clips."""
    rng = np.random.default_rng(0)
    for word, n in counts.items():
        (root / word).mkdir(parents=True)
        for k in range(n):
            sf.write(root / word / f"ls{k % 3}_nohash_{k:04d}_{k}.wav", word_tone(word, f"ls{k % 3}", rng=rng), SR,
                     subtype="PCM_16")
    return root


@pytest.fixture
def trees(tmp_path):
    own = make_fake_dataset(tmp_path / "own", speakers=4)
    more = make_fake_dataset(tmp_path / "more", speakers=20, lists=False, seed=5)  # 2 validation, 2 testing speakers
    shutil.copy(next(p for p in sorted((own / "yes").iterdir()) if hash_split(f"yes/{p.name}") != "test"),
                more / "yes")  # a speaker of the model's own data
    corpus = _corpus(tmp_path / "corpus", {"the": 30, "cat": 25, "rare": 3, "x2": 40})
    return own, more, corpus


def test_wordset_keeps_testing_and_own_speakers_out_and_lists_validation(trees, tmp_path):
    own, more, corpus = trees
    out = tmp_path / "words"
    r = build_wordset(out, (more,), (corpus,), exclude_speakers_of=(own,))
    index = SpeechCommandsIndex.scan(out)
    # every fake word, and "the"; "rare" (3 clips < 25) and "x2" (not letters) are not classes
    assert index.words == sorted({*FAKE_WORDS, "the"}) and r.words == len(index.words)
    own_speakers = {speaker_id(p.name) for p in own.glob("*/*.wav")}
    sc = [c for c in index.clips if not c.rel.split("/")[1].startswith("ls")]
    assert sc and all(hash_split(c.rel) != "test" for c in sc)
    assert not {speaker_id(c.rel) for c in sc} & own_speakers
    assert {c.rel for c in index.clips if c.split == "validation"} == \
        {c.rel for c in sc if hash_split(c.rel) == "validation"} != set()
    assert all(c.split != "test" for c in index.clips)
    testing_in_more = sum(hash_split(f"{p.parent.name}/{p.name}") == "test" for p in more.glob("*/*.wav"))
    assert testing_in_more and r.left_out["a speaker of the testing split"] == testing_in_more
    assert r.left_out["a speaker of --exclude-speakers-of"] == 1
    assert r.left_out["a read word with under 25 clips or not all letters"] == 43
    read_cats = [p for p in (out / "cat").iterdir() if p.name.startswith("ls")]
    assert len(read_cats) == 25 and all(p.is_symlink() and p.resolve().parent == corpus / "cat" for p in read_cats)
    assert (out / "_background_noise_").resolve() == (more / "_background_noise_").resolve()
    manifest = json.loads((out / "wordset.json").read_text())
    assert manifest["training"] == r.training and manifest["validation"] == r.validation == len(
        (out / "validation_list.txt").read_text().split())
    with pytest.raises(DataError, match="not an empty folder"):  # nothing of a folder is overwritten
        build_wordset(out, (more,))
    with pytest.raises(DataError, match="no clip is left"):
        build_wordset(tmp_path / "none", (own,), exclude_speakers_of=(own,))


def test_wordset_command_line(trees, tmp_path, capsys):
    own, more, corpus = trees
    out = tmp_path / "cli"
    assert main(["wordset", str(out), "--commands", str(more), "--corpus", str(corpus),
                 "--exclude-speakers-of", str(own), "--min-clips", "30"]) == 0
    said = capsys.readouterr().out
    assert f"{len(FAKE_WORDS) + 1} words" in said and "left out" in said
    assert not (out / "cat").exists() or all(not p.name.startswith("ls") for p in (out / "cat").iterdir())
    assert main(["wordset", str(tmp_path / "empty")]) == 2  # no source: a clear error, no traceback


def test_commands_model_starts_from_a_word_classifiers_encoder(trees, tmp_path):
    own, more, corpus = trees
    build_wordset(tmp_path / "words", (more,), (corpus,), exclude_speakers_of=(own,))
    cfg = TrainConfig(task="words35", optim=OptimConfig(epochs=1, batch_size=8))
    train(tmp_path / "words", tmp_path / "words.pt", cfg, FeatureConfig(), SMALL, device="cpu", progress=False,
          max_steps=2)
    words = load_checkpoint(tmp_path / "words.pt")
    assert len(words.labels) == len(FAKE_WORDS) + 1
    # a step so small that the weights stay where they started: the word classifier's encoder
    train(own, tmp_path / "c.pt", TrainConfig(optim=OptimConfig(epochs=1, batch_size=8, lr=1e-9)), FeatureConfig(),
          SMALL, device="cpu", progress=False, max_steps=1, init_from=tmp_path / "words.pt")
    tuned = load_checkpoint(tmp_path / "c.pt")
    assert len(tuned.labels) == 12 and tuned.provenance["init_from"] == str((tmp_path / "words.pt").resolve())
    for k in ("frontend.mfcc.dct_mat", "conv.0.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0_reverse"):
        assert torch.allclose(tuned.state_dict[k], words.state_dict[k], atol=1e-6), k
    assert tuned.state_dict["head.weight"].shape[0] == 12  # its own head, not the word classifier's
