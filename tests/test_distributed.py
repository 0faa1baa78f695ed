"""The training loop under torchrun: two CPU processes on the gloo backend (DDP)."""

import csv
from collections import Counter
import math
import os
import subprocess
import sys

import numpy as np
import torch

from speechlstm.checkpoint import load_checkpoint
from speechlstm.data import SpeechCommands
from speechlstm.loop import metrics_path, state_path


def test_batches_are_sharded_like_a_distributed_sampler(fake_dataset):
    data = SpeechCommands(fake_dataset, progress=False)
    split = data.split("train")
    shards = [[y for _, y in data.batches(split, 4, np.random.default_rng(0), shuffle=True, rank=r, world_size=2)]
              for r in (0, 1)]
    sizes = [sum(len(y) for y in s) for s in shards]
    assert sizes[0] == sizes[1] == math.ceil(len(split) / 2)  # every rank as many rows: no rank waits forever
    whole = Counter(torch.cat([torch.cat(s) for s in shards]).tolist())
    assert all(whole[label] >= n for label, n in Counter(split.labels.tolist()).items())  # every row is seen
    one = torch.cat([y for _, y in data.batches(split, 4, np.random.default_rng(0), shuffle=True)]).numpy()
    assert sorted(one.tolist()) == sorted(split.labels.tolist())  # one process: every row once, as before


def test_two_processes_train_one_model(fake_dataset, tmp_path):
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "speechlstm", "train", "--data-dir", str(fake_dataset), "--out", str(out), "--epochs", "2",
           "--set", "train.optim.batch_size=4", "--set", "model.hidden_size=16", "--device", "cpu", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "(rank 0 of 2)" in done.stdout and "(rank 1 of 2)" in done.stdout
    assert done.stdout.count("best epoch") == 1  # rank 0 alone reports and writes
    ckpt = load_checkpoint(out)
    assert ckpt.provenance["world_size"] == 2 and {"val_acc", "test_acc"} <= set(ckpt.metrics)
    assert [int(r["epoch"]) for r in csv.DictReader(metrics_path(out).open())] == [1, 2]
    # each process stepped through its half of every epoch: the scheduler counts half the steps
    n = ckpt.provenance["split_sizes"]["train"]
    steps = torch.load(state_path(out), weights_only=True)["scheduler"]["last_epoch"]
    assert steps == 2 * math.ceil(math.ceil(n / 2) / 4) < 2 * math.ceil(n / 4)
    # (the loop itself checks, at the end, that both ranks hold the same weights: else it fails)
