"""Deployment: int8 quantization, ONNX and TorchScript export, the Recognizer
running exported files, and the bench command's figures being well formed."""

import json

import numpy as np
import pytest
from torch import nn

from conftest import EXAMPLES, SHIPPED, TEST_MINI, needs_test_mini
from speechlstm import CheckpointError, ConfigError, Recognizer
from speechlstm.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from speechlstm.export import export_model

pytestmark = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped checkpoint")
EXAMPLE_WAVS = sorted(EXAMPLES.glob("*.wav"))


@pytest.fixture(scope="module")
def eager():
    return Recognizer.from_checkpoint(device="cpu", runtime="eager")


@pytest.fixture(scope="module")
def clips(eager):
    """Real clips: every test_mini clip when ../shared is there, else the shipped examples. (N, 16000)"""
    files = sorted(TEST_MINI.glob("*/*.wav")) if TEST_MINI.exists() else EXAMPLE_WAVS
    return np.stack([eager.prepare(f)[0] for f in files]), files


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """path of each exported variant, exported once for the module."""
    pytest.importorskip("onnxruntime", reason="ONNX export needs the [onnx] extra")
    pytest.importorskip("onnxscript", reason="ONNX export needs the [onnx] extra")
    out = tmp_path_factory.mktemp("exported")
    ckpt = load_checkpoint(SHIPPED)
    return {(fmt, int8): export_model(ckpt, out / f"m{'_int8' if int8 else ''}.{ext}", fmt, int8=int8)
            for fmt, ext in (("onnx", "onnx"), ("torchscript", "ts")) for int8 in (False, True)}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_fp32_matches_eager_on_real_clips(eager, clips, exported, fmt):
    waves, files = clips
    rec = Recognizer.from_checkpoint(exported[(fmt, False)], device="cpu")
    assert rec.backend == fmt
    ref, got = eager.logits(waves), rec.logits(waves)
    assert got.shape == ref.shape == (len(files), len(eager.labels))
    # stated tolerance: 1e-3 on logits (measured: ONNX 3.5e-5, TorchScript 0)
    assert np.abs(got - ref).max() < 1e-3
    assert (got.argmax(1) == ref.argmax(1)).all()
    # the features output is the model's own MFCC
    assert np.allclose(rec.mfcc(waves[0]), eager.mfcc(waves[0]), atol=1e-3)


def test_the_shipped_models_noise_floor_survives_onnx_export(clips, tmp_path):
    """The shipped model floors its features (features.dynamic_range_db): the exported
    graph computes the same floor, on real clips and on a clip gated to digital silence."""
    pytest.importorskip("onnxruntime", reason="ONNX export needs the [onnx] extra")
    pytest.importorskip("onnxscript", reason="ONNX export needs the [onnx] extra")
    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    assert ckpt.features.dynamic_range_db is not None
    eager = Recognizer(ckpt, device="cpu", runtime="eager")
    rec = Recognizer.from_checkpoint(export_model(ckpt, tmp_path / "stream.onnx", "onnx"), device="cpu")
    assert rec.checkpoint.features == ckpt.features  # the floor travels in the file's metadata
    waves = clips[0][:64].copy()
    waves[0, :6000] = 0.0  # digital silence before the word
    ref, got = eager.logits(waves), rec.logits(waves)
    assert np.abs(got - ref).max() < 1e-3
    assert np.allclose(rec.mfcc(waves[0]), eager.mfcc(waves[0]), atol=1e-3)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_model_is_self_describing(eager, exported, fmt, tmp_path):
    path = exported[(fmt, False)]
    rec = Recognizer.from_checkpoint(path, device="cpu")
    assert rec.labels == eager.labels and rec.sample_rate == eager.sample_rate
    assert rec.checkpoint.features == eager.checkpoint.features
    assert rec.checkpoint.metrics == eager.checkpoint.metrics
    assert rec.parameters == eager.parameters
    for wav in EXAMPLE_WAVS:  # files in, words out, as with the checkpoint
        assert rec.predict_file(wav).label == eager.predict_file(wav).label == wav.name.split("_")[0]
    # any batch size, including 1 and an odd one
    waves = np.stack([eager.prepare(w)[0] for w in EXAMPLE_WAVS[:1] * 7])
    assert rec.logits(waves[:1]).shape == (1, len(rec.labels))
    assert np.allclose(rec.logits(waves)[3], rec.logits(waves[:1])[0], atol=1e-4)
    with pytest.raises(ConfigError):
        Recognizer.from_checkpoint(path, device="cpu", int8=True)


def test_large_batches_run_in_chunks_and_keep_their_order(eager, clips, exported):
    """Batches past the chunk size (PyTorch: in turn; ONNX Runtime: on two cores at
    once) give each clip the logits it gets alone, in the input's order."""
    from speechlstm.runtime import CHUNK

    waves = np.concatenate([clips[0]] * (1 + (2 * CHUNK + 5) // len(clips[0])))[: 2 * CHUNK + 5]
    onnx = Recognizer.from_checkpoint(exported[("onnx", False)], device="cpu", threads=2)
    for rec in (eager, onnx):
        batch = rec.logits(waves)
        assert batch.shape == (len(waves), len(rec.labels))
        for i in (0, CHUNK - 1, CHUNK, len(waves) - 1):
            assert np.allclose(batch[i], rec.logits(waves[i : i + 1])[0], atol=1e-4), (rec.backend, i)


def test_corrupt_exported_files_give_clear_errors(exported, tmp_path):
    onnx_file = tmp_path / "broken.onnx"
    onnx_file.write_bytes(exported[("onnx", False)].read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="onnxruntime cannot load"):
        Recognizer.from_checkpoint(onnx_file)
    ts = tmp_path / "broken.ts"  # cut short: the zip directory at the end is gone
    ts.write_bytes(exported[("torchscript", False)].read_bytes()[:-3000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        Recognizer.from_checkpoint(ts)


@needs_test_mini
def test_int8_agrees_with_fp32_on_the_test_clips(eager, clips, exported):
    waves, files = clips
    truth = np.array([eager.labels.index(f.parent.name) for f in files])
    ref = eager.logits(waves).argmax(1)
    fp32_acc = (ref == truth).mean()
    variants = {"int8": Recognizer.from_checkpoint(device="cpu", int8=True),
                "onnx_int8": Recognizer.from_checkpoint(exported[("onnx", True)], device="cpu"),
                "torchscript_int8": Recognizer.from_checkpoint(exported[("torchscript", True)], device="cpu")}
    for name, rec in variants.items():
        pred = rec.logits(waves).argmax(1)
        assert (pred == ref).mean() >= 0.98, name  # measured: 99.1% (torch), 100% (ONNX)
        assert abs((pred == truth).mean() - fp32_acc) <= 0.005, name  # the 0.5-point bound
    # int8 stores each LSTM and Linear weight in 1 byte instead of 4 (the MFCC's matrices stay fp32)
    model = eager.checkpoint.build_model()
    quantized = sum(p.numel() for m in model.modules() if isinstance(m, (nn.LSTM, nn.Linear))
                    for name, p in m.named_parameters() if "weight" in name)
    for fmt in ("onnx", "torchscript"):
        saved = exported[(fmt, False)].stat().st_size - exported[(fmt, True)].stat().st_size
        assert saved > 0.9 * 3 * quantized, fmt  # measured: 1.00 (ONNX), 0.97 (TorchScript)


def test_int8_refuses_cuda_and_keeps_the_api(eager):
    q = Recognizer.from_checkpoint(device="cpu", int8=True)
    assert q.backend == "int8" and q.labels == eager.labels
    assert q.predict_file(EXAMPLE_WAVS[0]).label == EXAMPLE_WAVS[0].name.split("_")[0]
    with pytest.raises(ConfigError):
        Recognizer(load_checkpoint(SHIPPED), "meta", int8=True)


def test_cli_export_then_predict_with_the_exported_file(tmp_path, capsys):
    from speechlstm.cli import main

    out = tmp_path / "model.ts"
    assert main(["export", "--format", "torchscript", str(out)]) == 0
    assert out.is_file() and "torchscript" in capsys.readouterr().out
    assert main(["predict", "--json", "--checkpoint", str(out), str(EXAMPLE_WAVS[0])]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["label"] == EXAMPLE_WAVS[0].name.split("_")[0]


def test_bench_reports_every_figure():
    from speechlstm.bench import format_table, run_bench

    r = run_bench(SHIPPED, "cpu", batch_sizes=(1, 4), quick=True, onnx=False)
    assert set(r["latency"]) == {"fp32", "int8"}
    for s in r["latency"].values():
        assert 0 < s["median_ms"] <= s["p95_ms"]
    assert set(r["throughput"]) == {"fp32_b1", "fp32_b4", "int8_b1", "int8_b4"}
    assert all(v > 0 for v in r["throughput"].values())
    assert r["mfcc"]["torchaudio"]["median_ms"] > 0 and r["mfcc"]["librosa"]["median_ms"] > 0
    assert 0 < r["stream_hop"]["real_time_share"] < 1
    assert r["peak_rss_mb"] > 0 and r["parameters"] > 0
    table = format_table(r)
    assert "fp32" in table and "int8" in table and "clips/s" in table
    json.dumps(r)  # --json must be able to print it


def test_training_bench_times_every_stage(fake_dataset):
    from speechlstm.bench import bench_training, format_training

    r = bench_training(fake_dataset, "cpu", steps=3, batch_size=8)
    assert r["steps"] == 3 and r["clips"] == 24 and r["clips_per_s"] > 0
    assert list(r["stages"]) == ["load batch", "augment waveform", "MFCC", "forward: SpecAugment, network, loss",
                                 "backward", "optimizer step"]
    assert all(s["ms_per_step"] > 0 for s in r["stages"].values())
    assert abs(sum(s["share"] for s in r["stages"].values()) - 1) < 1e-3
    assert "clips/s" in format_training(r)
    json.dumps(r)
