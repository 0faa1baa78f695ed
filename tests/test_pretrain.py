"""Phonetic pretraining of the encoder, fine-tuning from it, and distillation."""

import json

import numpy as np
import pytest
import torch

from conftest import SR, make_fake_librispeech
from speechlstm.checkpoint import load_checkpoint, load_encoder
from speechlstm.augment import AugmentConfig
from speechlstm.config import FeatureConfig, ModelConfig
from speechlstm.distill import DistillConfig, Distillation
from speechlstm.loop import OptimConfig
from speechlstm.errors import CheckpointError, ConfigError
from speechlstm.model import KeywordBiLSTM
from speechlstm.pretrain import PHONES, PhoneCorpus, PretrainConfig, encoder_steps, held_out, pretrain
from speechlstm.train import TrainConfig, train

SMALL = ModelConfig(hidden_size=16, conv_channels=16)
WORD_PHONES = {"the": "DH", "cat": "K", "sat": "S", "there": "EH", "he": "HH", "said": "Z", "no": "N", "to": "T",
               "them": "M", "a": "AH", "long": "L", "walk": "W", "home": "OW"}


def _fake_aligned(tmp_path):
    """Fake LibriSpeech (one tone a second per word) and alignments in `speechlstm corpus`'s
    form: each word one phone, 100 ms of SIL at each word's edges."""
    root = make_fake_librispeech(tmp_path / "ls")
    out = tmp_path / "aligned"
    out.mkdir()
    lines = []
    for trans in sorted(root.rglob("*.trans.txt")):
        for line in trans.read_text().splitlines():
            key, text = line.split(" ", 1)
            words = text.lower().split()
            phones = []
            for k, w in enumerate(words):
                phones += [["SIL", k * 1000.0, k * 1000.0 + 100], [WORD_PHONES[w], k * 1000.0 + 100, k * 1000.0 + 900],
                           ["SIL", k * 1000.0 + 900, (k + 1) * 1000.0]]
            lines.append(json.dumps({"id": key, "speaker": key.split("-")[0],
                                     "words": [[w, k * 1000.0, (k + 1) * 1000.0] for k, w in enumerate(words)],
                                     "phones": phones}))
    (out / "alignments.jsonl").write_text("\n".join(lines) + "\n")
    return root, out


def test_windows_label_every_step_with_the_phone_at_its_time():
    # audio that encodes its own sample index, so each window's start can be read back
    n = 30000
    audio = np.arange(n, dtype=np.int16)
    phones = (np.arange(n // 160) // 7 % len(PHONES)).astype(np.int64)  # a new phone every 70 ms
    corpus = PhoneCorpus([audio], [phones], ["7"], SR)
    steps, step_ms = encoder_steps(FeatureConfig(), ModelConfig())
    assert (steps, step_ms) == (26, 40.0)  # (101 MFCC frames) -> stride-4 convolution -> 26 steps of 40 ms
    waves, labels = corpus.windows(16, SR, step_ms, steps, np.random.default_rng(0))
    assert waves.shape == (16, SR) and labels.shape == (16, 26)
    for row in range(16):
        start = int(round(float(waves[row, 0]) * 32767))
        assert np.array_equal(waves[row].numpy(), (np.arange(start, start + SR) / 32767.0).astype(np.float32))
        expected = phones[((start / 16 + np.arange(26) * 40) / 10).astype(int)]
        assert np.array_equal(labels[row].numpy(), expected)


def test_pretrain_learns_phones_and_training_starts_from_the_encoder(tmp_path, fake_dataset):
    root, aligned = _fake_aligned(tmp_path)
    assert [s for s in ("19", "32", "103", "1089") if held_out(s, 10.0)] == ["103"]
    enc_path = tmp_path / "encoder.pt"
    cfg = PretrainConfig(OptimConfig(epochs=4, batch_size=16, lr=1e-2, warmup_epochs=0.5),
                         AugmentConfig(noise_prob=0.0, speed=0.0, shift_ms=0.0), windows_per_second=8.0)
    metrics = pretrain(root, aligned, enc_path, cfg, FeatureConfig(), SMALL, device="cpu", progress=False)
    enc = load_encoder(enc_path)
    assert enc.phones == list(PHONES) and enc.model == SMALL and PretrainConfig.from_dict(enc.pretrain) == cfg
    assert enc.provenance["speakers"] == 3 and metrics == enc.metrics
    # the held-out speaker's words: SIL is 20% of the frames, so naming phones means beating 0.8 errors
    assert metrics["val_frame_acc"] > 0.6, metrics
    assert set(enc.state_dict) - set(enc.encoder_weights()) == {"phone_head.weight", "phone_head.bias"}

    # fine-tuning starts from exactly those weights (a vanishing learning rate keeps them)
    out = tmp_path / "ft.pt"
    train(fake_dataset, out, TrainConfig(optim=OptimConfig(epochs=1, batch_size=8, lr=1e-12, weight_decay=0.0)), FeatureConfig(),
          SMALL, device="cpu", progress=False, max_steps=1, init_from=enc_path)
    ckpt = load_checkpoint(out)
    assert ckpt.provenance["init_from"] == str(enc_path.resolve())
    for k, v in enc.encoder_weights().items():
        if "running_" in k or "num_batches" in k:  # batch-norm statistics move with every training batch
            continue
        assert torch.allclose(ckpt.state_dict[k].float(), v.float(), atol=1e-6), k
    fresh = KeywordBiLSTM(FeatureConfig(), SMALL, len(ckpt.labels)).state_dict()
    assert not torch.allclose(fresh["lstm.weight_ih_l0"], ckpt.state_dict["lstm.weight_ih_l0"])
    with pytest.raises(ConfigError, match="other feature/model settings"):
        train(fake_dataset, tmp_path / "x.pt", TrainConfig(optim=OptimConfig(epochs=1, batch_size=8)), FeatureConfig(),
              ModelConfig(hidden_size=8, conv_channels=16), device="cpu", progress=False, max_steps=1,
              init_from=enc_path)

    # an encoder is not a classifier, and a classifier is not an encoder
    with pytest.raises(CheckpointError, match="pretrained encoder, not a classifier"):
        load_checkpoint(enc_path)
    with pytest.raises(CheckpointError, match="not a pretrained encoder"):
        load_encoder(out)


def test_pretrain_needs_phone_alignments(tmp_path):
    root, aligned = _fake_aligned(tmp_path)
    rows = [json.loads(x) for x in (aligned / "alignments.jsonl").read_text().splitlines()]
    (aligned / "alignments.jsonl").write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "phones"})
                                                        for r in rows))
    from speechlstm.errors import DataError

    with pytest.raises(DataError, match="no phone alignments"):
        pretrain(root, aligned, tmp_path / "e.pt", progress=False, device="cpu")


def test_distillation_loss_and_teacher_checks(tmp_path, fake_dataset):
    teacher_path = tmp_path / "teacher.pt"
    train(fake_dataset, teacher_path, TrainConfig(optim=OptimConfig(epochs=1, batch_size=8)), FeatureConfig(), SMALL,
          device="cpu",
          progress=False, max_steps=3)
    teacher = load_checkpoint(teacher_path).build_model()
    feats = teacher.features(torch.randn(4, SR) * 0.1)
    with torch.no_grad():
        kl = Distillation(DistillConfig(weight=1.0, temperature=2.0), [teacher])  # the KL term alone
        same = kl(torch.tensor(0.0), teacher.classify(feats), feats)
        other = kl(torch.tensor(0.0), torch.zeros(4, len(load_checkpoint(teacher_path).labels)), feats)
    assert abs(same.item()) < 1e-5 and other.item() > 1e-3  # zero only when the student matches the teachers

    out = tmp_path / "student.pt"
    train(fake_dataset, out, TrainConfig(optim=OptimConfig(epochs=1, batch_size=8), distill=DistillConfig(weight=0.5)),
          FeatureConfig(), SMALL,
          device="cpu", progress=False, max_steps=2, teachers=(teacher_path,))
    assert load_checkpoint(out).provenance["teachers"] == [str(teacher_path.resolve())]
    with pytest.raises(ConfigError, match="needs teachers"):
        train(fake_dataset, tmp_path / "x.pt", TrainConfig(optim=OptimConfig(epochs=1), distill=DistillConfig(weight=0.5)),
              FeatureConfig(), SMALL,
              device="cpu", progress=False, max_steps=1)
    words35 = tmp_path / "words35.pt"
    train(fake_dataset, words35, TrainConfig(task="words35", optim=OptimConfig(epochs=1, batch_size=8)), FeatureConfig(),
          SMALL,
          device="cpu", progress=False, max_steps=1)
    with pytest.raises(ConfigError, match="same labels"):
        train(fake_dataset, tmp_path / "y.pt", TrainConfig(optim=OptimConfig(epochs=1), distill=DistillConfig(weight=0.5)),
              FeatureConfig(), SMALL,
              device="cpu", progress=False, max_steps=1, teachers=(words35,))
