#!/usr/bin/env bash
# Streaming-aware training (issue 13): the shipped recipe against the same recipe with
# streaming-aware windows and read-speech negatives, three seeds each, two runs at a time.
#   bash experiments/streaming.sh DATA_DIR TALK_DIR OUT_DIR
# DATA_DIR: Speech Commands tree; TALK_DIR: LibriSpeech-layout read speech for training
# (here Mini LibriSpeech train-clean-5, whose speakers are not in test-clean).
set -euo pipefail
DATA=$1 TALK=$2 OUT=$3
mkdir -p "$OUT"
# stream and talk50_place (words placed, cut and surrounded in the window) were measured and not kept:
# their settings left the package after commit 6ad52f6 (which runs them); their figures stay in the card.
source "$(dirname "$0")/lib.sh"
export OUT DATA
{
  for seed in 0 1 2; do
    echo "baseline $seed"
    echo "talk $seed --talk $TALK --set train.windows.talk_ratio=0.25"
  done
  for seed in 0 1 2; do
    echo "talk50 $seed --talk $TALK --set train.windows.talk_ratio=0.5"
  done
} | runs
