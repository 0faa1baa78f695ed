#!/usr/bin/env bash
# Calibrate the streaming rule of each model on the validation streams, then score it there.
#   bash experiments/streaming_eval.sh STREAM_DIR MODEL.pt ...
# STREAM_DIR holds val.wav/val.csv (validation speakers, read speech between the clips) and
# val_talk.wav (30 min of read speech alone), made with `speechlstm make-stream` (README).
# Writes MODEL.cal.pt (the model with its calibrated rule) and MODEL.cal.json (its validation
# scores, and under "before" those of the rule it started from: the pre-calibration default, or
# the one given by RULE, e.g. RULE="--lookahead-ms 0 --average-window-ms 500 --threshold 0.7").
set -euo pipefail
S=$1; shift
for m in "$@"; do
  cal=${m%.pt}.cal.pt
  [ -f "$cal" ] && continue
  OMP_NUM_THREADS=1 speechlstm calibrate-stream --checkpoint "$m" --audio "$S/val.wav" --labels "$S/val.csv" \
    --speech-audio "$S/val_talk.wav" --out "$cal" --quiet ${RULE:-} > "${m%.pt}.cal.json"
done
