#!/usr/bin/env bash
# Issue 13, false-alarm mining: fine-tune the talk50_dist model (seed 0) for 10 epochs with its
# recipe and teachers, with half of its read-speech rows drawn from its own false alarms on that
# speech (mined) or without (plain); three seeds each, two runs at a time. Then calibrate each on
# the command-free validation streams with experiments/streaming_eval.sh.
#   bash experiments/streaming_mine.sh DATA_DIR TALK_DIR EXTRA_DIR STREAM2_DIR OUT_DIR
# STREAM2_DIR: what experiments/streaming_more.sh wrote (talk50_dist-s0.pt, talk50_pre-s?.pt).
set -euo pipefail
DATA=$1 TALK=$2 EXTRA=$3 FROM=$4 OUT=$5
mkdir -p "$OUT"
RECIPE="--talk $TALK --set train.windows.talk_ratio=0.5 --extra-data $EXTRA/tc5 --extra-data $EXTRA/precise \
--extra-data $EXTRA/sc_toy --set train.sampling.extra_unknown_ratio=0.3 --teacher $FROM/talk50_pre-s0.pt \
--teacher $FROM/talk50_pre-s1.pt --teacher $FROM/talk50_pre-s2.pt --set train.distill.weight=0.5"
TUNE="--init-from $FROM/talk50_dist-s0.pt --set train.optim.epochs=10 --set train.optim.lr=1e-3 --set train.optim.warmup_epochs=0.5"
source "$(dirname "$0")/lib.sh"
export OUT DATA
{
  seeds plain $RECIPE $TUNE
  seeds mined $RECIPE $TUNE --mine-with $FROM/talk50_dist-s0.pt --set train.mining.share=0.5
} | runs
