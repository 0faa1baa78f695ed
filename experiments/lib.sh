# Shared by the experiment scripts:
#   run NAME SEED ARGS...   trains $OUT/NAME-sSEED.pt on $DATA with one torch thread, its log beside it;
#                           a finished run is skipped and an interrupted one resumes (--resume)
#   ... | runs              one `run` per input line ("NAME SEED ARGS..."), $JOBS (2) at a time
#   seeds NAME ARGS...      the lines "NAME 0 ARGS", "NAME 1 ARGS", "NAME 2 ARGS" for `runs`
#   teachers NAME           the --teacher flags for the three seeds of NAME
run() {
  local name=$1 seed=$2; shift 2
  grep -qs '^best epoch' "$OUT/$name-s$seed.log" && return 0
  OMP_NUM_THREADS=1 speechlstm train --data-dir "$DATA" --out "$OUT/$name-s$seed.pt" --set train.optim.seed=$seed \
    --resume --quiet "$@" >> "$OUT/$name-s$seed.log" 2>&1
}
runs() { xargs -P "${JOBS:-2}" -L 1 bash -c 'run "$@"' _; }
seeds() { local name=$1; shift; for seed in 0 1 2; do echo "$name $seed $*"; done; }
teachers() { echo "--teacher $OUT/$1-s0.pt --teacher $OUT/$1-s1.pt --teacher $OUT/$1-s2.pt"; }
export -f run
