#!/usr/bin/env bash
# Issue 13 with issue 12's findings: the streaming recipe (read-speech crops as _unknown_, talk50)
# starting from the phonetically pretrained encoder, with the aligned corpus words as other words
# of their own share (talk50_pre), and also their command words as extra positives (talk50_pos);
# then talk50_pre learning also the mean posteriors of the three talk50_pre models (talk50_dist,
# weight 0.5); talk50_pre with read-speech crops at three quarters of a batch (talk75_pre); and
# talk75_pre distilled from the same three teachers (talk75_dist).
# Three seeds each, two runs at a time; then calibrate with experiments/streaming_eval.sh and
# tabulate with experiments/streaming_table.py.
#   bash experiments/streaming_more.sh DATA_DIR TALK_DIR EXTRA_DIR ENCODER OUT_DIR
# TALK_DIR: train-clean-5 (LibriSpeech layout); EXTRA_DIR: what experiments/corpora.sh wrote;
# ENCODER: `speechlstm pretrain` output (experiments/learn_more.sh writes it).
set -euo pipefail
DATA=$1 TALK=$2 EXTRA=$3 ENC=$4 OUT=$5
mkdir -p "$OUT"
TALK50="--talk $TALK --set train.windows.talk_ratio=0.5"
EXTRA_SHARE="--extra-data $EXTRA/tc5 --extra-data $EXTRA/precise --extra-data $EXTRA/sc_toy --set train.sampling.extra_unknown_ratio=0.3"
source "$(dirname "$0")/lib.sh"
export OUT DATA
{
  seeds talk50_pre $TALK50 $EXTRA_SHARE --init-from $ENC
  seeds talk50_pos $TALK50 $EXTRA_SHARE --init-from $ENC --set train.sampling.synth_ratio=0.2
} | runs
TEACHERS=$(teachers talk50_pre)
seeds talk50_dist $TALK50 $EXTRA_SHARE --init-from $ENC $TEACHERS --set train.distill.weight=0.5 | runs
seeds talk75_pre --talk $TALK --set train.windows.talk_ratio=0.75 $EXTRA_SHARE --init-from $ENC | runs
seeds talk75_dist --talk $TALK --set train.windows.talk_ratio=0.75 $EXTRA_SHARE --init-from $ENC $TEACHERS \
  --set train.distill.weight=0.5 | runs
