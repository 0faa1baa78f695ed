"""The CUDA path: features on the GPU, autocast inference, AMP training, streaming.

Skipped where no GPU is present (CI has none); run on a GPU machine with
`pytest tests/test_cuda.py`.
"""

import numpy as np
import pytest
import torch

from speechlstm.checkpoint import load_checkpoint
from speechlstm.config import FeatureConfig, ModelConfig
from speechlstm.loop import OptimConfig
from speechlstm.infer import Recognizer
from speechlstm.stream import StreamingRecognizer
from speechlstm.train import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    tones = [0.3 * np.sin(2 * np.pi * f * t) * np.hanning(16000) for f in (300, 700, 1500, 3000)]
    return np.stack([*tones, *(0.05 * rng.standard_normal((4, 16000)))]).astype(np.float32)  # (8, S)


def test_gpu_features_match_the_cpu(clips):
    model = load_checkpoint(None).build_model()
    x = torch.from_numpy(clips)
    with torch.inference_mode():
        cpu = model.features(x)  # (B, T, n_mfcc)
        gpu = model.to("cuda").features(x.cuda()).cpu()
        with torch.autocast("cuda", dtype=torch.float16):  # the front end stays float32 under autocast
            amp = model.features(x.cuda())
    assert amp.dtype == torch.float32
    assert torch.allclose(cpu, gpu, atol=1e-3, rtol=1e-3)
    assert torch.allclose(cpu, amp.cpu(), atol=1e-3, rtol=1e-3)


def test_gpu_recognizer_agrees_with_the_cpu(clips):
    cpu, gpu = Recognizer.from_checkpoint(None, device="cpu"), Recognizer.from_checkpoint(None, device="cuda")
    a, b = cpu.logits(clips), gpu.logits(clips)
    assert np.abs(a - b).max() < 1e-2
    assert (a.argmax(1) == b.argmax(1)).all()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
        half = gpu.checkpoint.build_model().cuda()(torch.from_numpy(clips).cuda()).float().cpu().numpy()
    assert (half.argmax(1) == a.argmax(1)).mean() >= 7 / 8 and np.abs(half - a).max() < 0.2


def test_streaming_on_the_gpu_matches_the_cpu(clips):
    audio = np.concatenate([np.zeros(8000, np.float32), *clips[:4]])
    traces, detections = {}, {}
    for dev in ("cpu", "cuda"):
        s = StreamingRecognizer(Recognizer.from_checkpoint(None, device=dev), gate_db=None)
        s.trace = []
        detections[dev] = [d.label for d in s.push(audio, last=True)]
        traces[dev] = np.stack([p for _, p in s.trace])  # (hops, n_classes)
    assert traces["cpu"].shape == traces["cuda"].shape and len(traces["cpu"]) > 10
    assert np.abs(traces["cpu"] - traces["cuda"]).max() < 1e-2
    assert detections["cpu"] == detections["cuda"]


def test_amp_training_on_the_gpu_learns_and_saves(fake_dataset, tmp_path):
    out = tmp_path / "gpu.pt"
    result = train(fake_dataset, out, TrainConfig(optim=OptimConfig(epochs=3, batch_size=8)), FeatureConfig(),
                   ModelConfig(hidden_size=16, num_layers=1), device="cuda", progress=False, max_steps=4)
    ckpt = load_checkpoint(out)
    assert ckpt.provenance["device"].startswith("cuda") and result.best_epoch >= 1
    assert all(t.device.type == "cpu" for t in ckpt.state_dict.values())  # loads on CPU-only machines
    assert all(torch.isfinite(t).all() for t in ckpt.state_dict.values() if t.is_floating_point())
    pred = Recognizer.from_checkpoint(out, device="cpu").predict_file(next((fake_dataset / "yes").iterdir()))
    assert pred.label in ckpt.labels
