#!/usr/bin/env bash
# Streaming-aware training (issue 13): the shipped recipe against the same recipe with
# streaming-aware windows and read-speech negatives, three seeds each, two runs at a time.
#   bash experiments/streaming.sh DATA_DIR TALK_DIR OUT_DIR
# DATA_DIR: Speech Commands tree; TALK_DIR: LibriSpeech-layout read speech for training
# (here Mini LibriSpeech train-clean-5, whose speakers are not in test-clean).
set -euo pipefail
DATA=$1 TALK=$2 OUT=$3
mkdir -p "$OUT"
STREAM="--set train.stream_place_prob=0.3 --set train.stream_cut_prob=0.25 --set train.stream_context_prob=0.25"
PLACE="--set train.stream_place_prob=0.3 --set train.stream_context_prob=0.25"  # no cut words
source "$(dirname "$0")/lib.sh"
export OUT DATA
{
  for seed in 0 1 2; do
    echo "baseline $seed"
    echo "talk $seed --talk $TALK --set train.talk_ratio=0.25"
    echo "stream $seed --talk $TALK --set train.talk_ratio=0.25 $STREAM"
  done
  for seed in 0 1 2; do
    echo "talk50 $seed --talk $TALK --set train.talk_ratio=0.5"
    echo "talk50_place $seed --talk $TALK --set train.talk_ratio=0.5 $PLACE"
  done
} | runs
