"""The default CPU runtime: ONNX Runtime with int8 weights, exported once into the
user's cache, never trusted when stale or damaged, as accurate as eager fp32."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from conftest import EXAMPLES, SHIPPED, needs_test_mini, TEST_MINI
from speechlstm import Recognizer, StreamingRecognizer
from speechlstm.checkpoint import load_checkpoint
from speechlstm.errors import ConfigError
from speechlstm.export import cached_onnx, export_digest
from speechlstm.runtime import load_exported, probe_waves


def _only_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.onnx"))
    assert len(files) == 1, files
    return files[0]


def test_default_on_cpu_is_onnx_int8_cached(tmp_path: Path) -> None:
    ckpt = load_checkpoint(SHIPPED)
    first, path, built = cached_onnx(ckpt, cache_dir=tmp_path)
    assert built and path.parent == tmp_path / "runtime" and first.kind == "onnx-int8"
    stamp = path.stat().st_mtime_ns
    again, path2, built2 = cached_onnx(ckpt, cache_dir=tmp_path)
    assert not built2 and path2 == path and path.stat().st_mtime_ns == stamp  # reused, not exported again
    rec = Recognizer.from_checkpoint(device="cpu")  # the session's cache (conftest)
    assert rec.backend == "onnx-int8" and "cache" in rec.runtime_note
    assert rec.predict_file(EXAMPLES / "yes_283d7a53_nohash_0.wav").label == "yes"
    assert StreamingRecognizer.from_checkpoint().recognizer.backend == "onnx-int8"


def test_export_records_the_runtimes_own_logits(tmp_path: Path) -> None:
    """The probe logits an export records are bit for bit the ones the runtime's session
    gives. Recorded in a session with other threads they were not (fp32 sums in another
    order, then int8 rounding: up to 3e-3 on some trained models), and such a model failed
    its own export check on every load and ran eager."""
    ckpt = load_checkpoint(SHIPPED)
    runner, path, _ = cached_onnx(ckpt, cache_dir=tmp_path)
    recorded = load_exported(path, torch.device("cpu"))[0].provenance["export"]["probe_logits"]
    waves = probe_waves(ckpt.features.clip_samples, ckpt.features.sample_rate)
    got = np.concatenate([runner(w[None])[0] for w in waves])  # (2, n_labels), one clip a run
    assert np.array_equal(got, np.asarray(recorded))


def test_eager_keeps_the_old_path() -> None:
    rec = Recognizer.from_checkpoint(device="cpu", runtime="eager")
    assert rec.backend == "fp32" and rec.runtime == "fp32 on cpu"
    assert Recognizer.from_checkpoint(device="cpu", int8=True).backend == "int8"
    with pytest.raises(ConfigError, match="unknown runtime"):
        Recognizer.from_checkpoint(device="cpu", runtime="tflite")


def test_stale_cache_is_rebuilt(tmp_path: Path) -> None:
    """A file at the cache's name, exported from another checkpoint, is not used."""
    clip, other = load_checkpoint(SHIPPED), load_checkpoint(SHIPPED)
    other.state_dict = {k: v * 0.5 if v.is_floating_point() else v for k, v in other.state_dict.items()}
    _, other_path, _ = cached_onnx(other, cache_dir=tmp_path / "other")
    _, path, _ = cached_onnx(clip, cache_dir=tmp_path)
    shutil.copy(other_path, path)  # another model's export where this one's belongs
    runner, path2, built = cached_onnx(clip, cache_dir=tmp_path)
    assert built and path2 == path
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert export_digest(clip) in meta["speechlstm"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "weights"])
def test_damaged_cache_is_rebuilt(tmp_path: Path, damage: str) -> None:
    ckpt = load_checkpoint(SHIPPED)
    good, path, _ = cached_onnx(ckpt, cache_dir=tmp_path)
    waves = np.stack([np.asarray(Recognizer.from_checkpoint(device="cpu").prepare(p)[0])
                      for p in sorted(EXAMPLES.glob("*.wav"))])
    want = good(waves)[0]
    if damage == "garbage":
        path.write_bytes(b"not an onnx file" * 100)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # still a valid ONNX file with the right metadata, but one weight changed
        model = onnx.load(str(path))
        init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        w = numpy_helper.to_array(init).copy()
        w.flat[: w.size // 2] = w.flat[: w.size // 2][::-1]
        init.CopyFrom(numpy_helper.from_array(w, init.name))
        onnx.save(model, str(path))
    runner, _, built = cached_onnx(ckpt, cache_dir=tmp_path)
    assert built, "a damaged cache must be rebuilt, not trusted"
    assert np.allclose(runner(waves)[0], want, atol=1e-5)


def test_int8_answers_do_not_depend_on_the_batch() -> None:
    rec = Recognizer.from_checkpoint(device="cpu")
    files = sorted(EXAMPLES.glob("*.wav"))
    batch = rec.predict_batch(files, top_k=12)
    for f, b in zip(files, batch):
        one = rec.predict_file(f, top_k=12)
        assert dict(one.top) == pytest.approx(dict(b.top), abs=1e-6)


@needs_test_mini
def test_int8_as_accurate_as_eager_on_test_mini() -> None:
    """The condition for making it the default: within 0.5 points of eager fp32."""
    from speechlstm.evaluate import evaluate, find_items

    items = find_items(TEST_MINI)
    acc = {rt: evaluate(Recognizer.from_checkpoint(device="cpu", runtime=rt),
                        items, progress=False).data["accuracy"] for rt in ("eager", "auto")}
    assert abs(acc["auto"] - acc["eager"]) <= 0.005, acc


def test_an_unusable_cache_falls_back_to_eager_and_says_why(tmp_path, monkeypatch) -> None:
    """A cache that cannot be written (here a file where the folder should be) must not stop
    recognition under "auto"; an explicit runtime still fails loudly."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("SPEECHLSTM_CACHE", str(blocker))
    rec = Recognizer.from_checkpoint(device="cpu")
    assert rec.backend == "fp32" and "no ONNX Runtime export" in rec.runtime_note
    assert rec.predict_file(EXAMPLES / "yes_283d7a53_nohash_0.wav").label == "yes"
    with pytest.raises(OSError):
        Recognizer.from_checkpoint(device="cpu", runtime="onnx-int8")
