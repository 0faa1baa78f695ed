import math
from collections import defaultdict

import numpy as np
import pytest

from conftest import MINI, make_fake_dataset, needs_shared
from speechlstm.data import (COMMANDS10, SILENCE, UNKNOWN, ClipCache, SpeechCommands, SpeechCommandsIndex,
                             hash_split, speaker_id)
from speechlstm.errors import DataError


def test_hash_rule_keeps_each_speaker_in_one_split():
    rng = np.random.default_rng(1)
    speakers = [f"{s:08x}" for s in rng.integers(0, 2**32, 2000)]
    splits = defaultdict(set)
    for s in speakers:
        for word in ("yes", "no", "marvin"):
            for k in range(3):
                splits[s].add(hash_split(f"{word}/{s}_nohash_{k}.wav"))
    assert all(len(v) == 1 for v in splits.values())
    share = {name: sum(next(iter(v)) == name for v in splits.values()) / len(splits)
             for name in ("train", "validation", "test")}
    assert abs(share["validation"] - 0.1) < 0.03 and abs(share["test"] - 0.1) < 0.03


@needs_shared
def test_real_lists_are_speaker_disjoint():
    idx = SpeechCommandsIndex.scan(MINI)
    split_of = defaultdict(set)
    for c in idx.clips:
        split_of[speaker_id(c.rel)].add(c.split)
    assert all(len(v) == 1 for v in split_of.values())
    assert len(idx.noise_files) == 6


def test_without_lists_the_hash_rule_is_used(tmp_path):
    root = make_fake_dataset(tmp_path / "sc", speakers=12, lists=False)
    idx = SpeechCommandsIndex.scan(root)
    assert idx.split_source == "hash"
    assert all(c.split == hash_split(c.rel) for c in idx.clips)


def test_commands12_silence_and_unknown_are_a_twelfth_each(tmp_path):
    root = make_fake_dataset(tmp_path / "sc", speakers=20)
    ds = SpeechCommands(root, "commands12", progress=False)
    assert ds.labels == [SILENCE, UNKNOWN, *COMMANDS10]
    train = ds.split("train")
    counts = np.bincount(train.labels, minlength=12)
    n_commands = counts[2:].sum()
    assert counts[0] == math.ceil(0.1 * n_commands)  # silence
    assert counts[1] == math.ceil(0.1 * n_commands)  # unknown (pool is large enough here)
    assert abs(counts[0] / counts.sum() - 1 / 12) < 0.01
    # unknown rows really come from non-command words
    unknown_rows = set(train.rows[train.labels == 1])
    words = {c.word for c in ds.index.clips if ds.cache.rows.get(c.rel) in unknown_rows}
    assert words and words.isdisjoint(COMMANDS10)
    # evaluation splits are fixed; training draws fresh unknowns per epoch
    np.testing.assert_array_equal(ds.split("validation").rows, ds.split("validation").rows)
    a = ds.split("train", np.random.default_rng([0, 1])).rows
    b = ds.split("train", np.random.default_rng([0, 2])).rows
    assert not np.array_equal(a, b)


def test_words35_uses_every_word_and_no_fillers(tmp_path):
    root = make_fake_dataset(tmp_path / "sc")
    ds = SpeechCommands(root, "words35", progress=False)
    assert ds.labels == sorted(ds.index.words) and SILENCE not in ds.labels
    assert len(ds.split("train")) == sum(c.split == "train" for c in ds.index.clips)


def test_batches_silence_is_noise_and_clips_match_files(tmp_path):
    import soundfile as sf

    root = make_fake_dataset(tmp_path / "sc")
    ds = SpeechCommands(root, "commands12", progress=False)
    split = ds.split("validation")
    waves, labels = next(ds.batches(split, 64, np.random.default_rng(0)))
    assert waves.shape == (len(split), 16000) and waves.dtype.__str__() == "torch.float32"
    silence = waves[labels == 0]
    assert len(silence) and float(silence.abs().max()) > 0  # cut from background noise
    first_rel = next(rel for rel, row in ds.cache.rows.items() if row == split.rows[0])
    ref, _ = sf.read(root / first_rel, dtype="float32")
    np.testing.assert_allclose(waves[0].numpy(), ref, atol=2e-4)


def test_cache_is_reused_and_rebuilt_when_files_change(tmp_path):
    root = make_fake_dataset(tmp_path / "sc")
    idx = SpeechCommandsIndex.scan(root)
    cache_dir = tmp_path / "c"
    ClipCache.build(idx, 16000, 16000, cache_dir, progress=False)
    assert len(list(cache_dir.glob("*.npy"))) == 1
    ClipCache.build(idx, 16000, 16000, cache_dir, progress=False)
    assert len(list(cache_dir.glob("*.npy"))) == 1  # reused
    (root / "yes" / "deadbeef_nohash_0.wav").write_bytes(b"RIFF garbage")  # new, unreadable
    cache = ClipCache.build(SpeechCommandsIndex.scan(root), 16000, 16000, cache_dir, progress=False)
    assert len(list(cache_dir.glob("*.npy"))) == 2
    assert [rel for rel, _ in cache.skipped] == ["yes/deadbeef_nohash_0.wav"]
    assert "yes/deadbeef_nohash_0.wav" not in cache.rows
    assert cache.waves.shape[0] == len(cache.rows)


def test_missing_or_empty_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        SpeechCommandsIndex.scan(tmp_path / "nope")
    with pytest.raises(DataError, match="no word folders"):
        SpeechCommandsIndex.scan(tmp_path)
