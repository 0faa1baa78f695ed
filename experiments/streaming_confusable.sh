#!/usr/bin/env bash
# Issue 13, confusable words: experiments/streaming_floor.sh's fine-tuning of the shipped stream model
# (10 epochs, the floor in training, read-speech rows half from its own mined false alarms, floored
# teachers) with half of its extra other words drawn from the words it takes for a command
# (train.extra_hard_share=0.5: "now" for no, "yet" for yes, ...; mining.confusable_weights), and the
# same with twice the other words (confusable_more: extra_unknown_ratio 0.6). Three seeds each, two
# runs at a time; then calibrate each with experiments/streaming_eval.sh.
#   bash experiments/streaming_confusable.sh DATA_DIR TALK_DIR EXTRA_DIR STREAM2_DIR OUT_DIR
set -euo pipefail
FLOOR="$(dirname "$0")/streaming_floor.sh"
bash "$FLOOR" "$@" confusable --set train.extra_hard_share=0.5
bash "$FLOOR" "$@" confusable_more --set train.extra_hard_share=0.5 --set train.extra_unknown_ratio=0.6
