#!/usr/bin/env bash
# Issue 13, after the noise floor: fine-tune the shipped stream model (mined, floored) for 10 more
# epochs with the floor in training too (features.dynamic_range_db=50), half of its read-speech
# rows from its own false alarms mined again with the floor (the second mining round), its recipe,
# and its three teachers given the same floor (a teacher must share the student's features).
# Three seeds, two runs at a time; then calibrate each with experiments/streaming_eval.sh.
#   bash experiments/streaming_floor.sh DATA_DIR TALK_DIR EXTRA_DIR STREAM2_DIR OUT_DIR [NAME TRAIN_ARGS...]
# NAME TRAIN_ARGS: train NAME-s{0,1,2} with TRAIN_ARGS added
# instead of floor_mined-s{0,1,2}.
set -euo pipefail
DATA=$1 TALK=$2 EXTRA=$3 FROM=$4 OUT=$5
shift 5
NAME=${1:-floor_mined}
shift $(( $# > 0 ? 1 : 0 ))
mkdir -p "$OUT"
HERE=$(dirname "$0")
for s in 0 1 2; do  # the teachers with the floor (weights untouched)
  [ -f "$OUT/teacher-s$s.pt" ] || python "$HERE/dynamic_range.py" "$DATA" "$FROM/talk50_pre-s$s.pt" --levels none \
    --write 50 "$OUT/teacher-s$s.pt" > "$OUT/teacher-s$s.log" 2>&1
done
SHIPPED=$(cd "$HERE/.." && pwd)/checkpoints/commands12.pt
RECIPE="--talk $TALK --set train.windows.talk_ratio=0.5 --extra-data $EXTRA/tc5 --extra-data $EXTRA/precise \
--extra-data $EXTRA/sc_toy --set train.sampling.extra_unknown_ratio=0.3 --teacher $OUT/teacher-s0.pt \
--teacher $OUT/teacher-s1.pt --teacher $OUT/teacher-s2.pt --set train.distill.weight=0.5 \
--set features.dynamic_range_db=50"
TUNE="--init-from $SHIPPED --set train.optim.epochs=10 --set train.optim.lr=1e-3 --set train.optim.warmup_epochs=0.5"
source "$HERE/lib.sh"
export OUT DATA
seeds "$NAME" $RECIPE $TUNE --mine-with $SHIPPED --set train.mining.share=0.5 "$@" | runs
