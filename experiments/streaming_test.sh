#!/usr/bin/env bash
# Score calibrated models once on the test streams: test-list speakers with read speech between
# the clips (test.wav/test.csv) and an hour of read speech by other speakers alone (test_talk.wav).
#   bash experiments/streaming_test.sh STREAM_DIR MODEL.cal.pt ...   -> MODEL.test.json, MODEL.sweep/
# Extra options after "--" go to every evaluate-stream call (e.g. -- --lookahead-ms 0 --threshold 0.7).
# THREADS: torch threads per call (default 1, for running beside trainings).
set -euo pipefail
S=$1; shift
models=(); while [ $# -gt 0 ] && [ "$1" != "--" ]; do models+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
tag=${TAG:-test}
for m in "${models[@]}"; do
  OMP_NUM_THREADS=${THREADS:-1} speechlstm evaluate-stream --checkpoint "$m" --audio "$S/test.wav" --labels "$S/test.csv" \
    --speech-audio "$S/test_talk.wav" --sweep --out "${m%.pt}.$tag.sweep" --json --quiet "$@" > "${m%.pt}.$tag.json"
done
