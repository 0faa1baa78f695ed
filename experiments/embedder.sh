#!/usr/bin/env bash
# The enrolment embedder (issue 28), checkpoints/embedder.pt: a word classifier over many words
# whose attention-pooled vector is what an enrolled word's head reads.
#   bash experiments/embedder.sh MINI MINALI TALK OUT_DIR TC5 [MORE_WORDS...]
# MINI: speech_commands_mini; MINALI: Minali24/Identify-Speech-Commands audio/audio (Speech Commands
# v0.01); TALK: train-clean-5 (read speech); TC5: `speechlstm corpus TALK --words all` (its words, and
# the phone alignments the encoder is pretrained on); MORE_WORDS: other `speechlstm corpus` outputs
# (here jimbozhang/speechocean762's 250 speakers: `speechlstm corpus` reads its Kaldi data dirs).
# Never trained on: the benchmark's words (HELD_OUT) and half of MINALI's speakers (CRC-32 of the speaker
# id odd): benchmarks/enroll.py --exclude-speakers-of OUT_DIR/data leaves every trained speaker out.
# SEED=N: another run of the recipe (the encoder's pretraining and the word stage both seeded N; default
# the recipe's 2, the shipped file's run).
set -euo pipefail
MINI=$1 MINALI=$2 TALK=$3 OUT=$4 TC5=$5
shift 4
HELD_OUT=${HELD_OUT:-marvin,sheila,house,bird,wow,zero,one,five,eight}
MIN_TOKENS=${MIN_TOKENS:-25}
PY=${PY:-python}
mkdir -p "$OUT"
$PY - "$MINI" "$MINALI" "$OUT/data" "$HELD_OUT" "$MIN_TOKENS" "$@" <<'PYEOF'
import collections, os, shutil, sys, zlib
from pathlib import Path
mini, minali, out = map(Path, sys.argv[1:4])
held, min_tokens, corpora = set(sys.argv[4].split(",")), int(sys.argv[5]), [Path(a) for a in sys.argv[6:]]
shutil.rmtree(out, ignore_errors=True)
out.mkdir(parents=True)
os.symlink(mini.resolve() / "_background_noise_", out / "_background_noise_")
count = collections.Counter()
def link(src: Path, word: str, name: str) -> None:
    (out / word).mkdir(exist_ok=True)
    if not (out / word / name).exists():
        os.symlink(src.resolve(), out / word / name)
        count[word] += 1
for f in sorted(mini.glob("*/*.wav")):  # the dataset itself, lists and all
    if not f.parent.name.startswith("_") and f.parent.name not in held:
        link(f, f.parent.name, f.name)
for name in ("validation_list.txt", "testing_list.txt"):
    (out / name).write_text("".join(f"{line}\n" for line in (mini / name).read_text().split()
                                    if line.split("/")[0] not in held))
for f in sorted(minali.glob("*/*.wav")):  # v0.01 speakers outside the benchmark's half: training clips
    if f.parent.name not in held and not f.name.startswith("._") and zlib.crc32(f.name.split("_")[0].encode()) % 2 == 0:
        link(f, f.parent.name, f.name)
files = [f for c in corpora for f in sorted(c.glob("*/*.wav"))]
tokens = collections.Counter(f.parent.name for f in files)
for f in files:  # read words with enough tokens to be a class; never a held-out word
    word = f.parent.name
    if tokens[word] >= min_tokens and len(word) >= 3 and word not in held and word.isalpha():
        link(f, word, f.name)
print(f"{len(count)} words, {sum(count.values())} clips; fewest {min(count.values())}, most {max(count.values())}")
PYEOF
$PY -m speechlstm recipe recipes/embedder.toml --out-dir "$OUT" --var data="$OUT/data" --var talk="$TALK" \
  --var aligned="$TC5" ${SEED:+--set pretrain.optim.seed=$SEED --set train.optim.seed=$SEED}
$PY -m speechlstm make-embedder "$OUT/embedder-words.pt" --clips "$MINI" $(printf -- '--clips %s ' "$@") \
  --talk "$TALK" --skip "$HELD_OUT" --out "$OUT/embedder.pt"
