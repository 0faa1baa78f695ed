# Shared by the experiment scripts: `run NAME SEED ARGS...` trains $OUT/NAME-sSEED.pt on $DATA with one torch
# thread (skipped when the checkpoint exists, so a rerun continues), its log beside it.
run() {
  local name=$1 seed=$2; shift 2
  [ -f "$OUT/$name-s$seed.pt" ] && return 0
  OMP_NUM_THREADS=1 speechlstm train --data-dir "$DATA" --out "$OUT/$name-s$seed.pt" --set train.seed=$seed \
    --quiet "$@" > "$OUT/$name-s$seed.log" 2>&1
}
export -f run
