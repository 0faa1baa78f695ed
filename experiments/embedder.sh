#!/usr/bin/env bash
# The enrolment embedder (issue 28), checkpoints/embedder.pt: a word classifier over many words
# whose attention-pooled vector is what an enrolled word's head reads.
#   bash experiments/embedder.sh MINI MINALI TC5 TALK OUT_DIR
# MINI: speech_commands_mini; MINALI: Minali24/Identify-Speech-Commands audio/audio (Speech Commands
# v0.01); TC5: `speechlstm corpus train-clean-5 --words all` output; TALK: train-clean-5 (read speech).
# Never trained on: the benchmark's words (HELD_OUT) and half of MINALI's speakers (CRC-32 of the speaker
# id odd): benchmarks/enroll.py --exclude-speakers-of OUT_DIR/data leaves every trained speaker out.
set -euo pipefail
MINI=$1 MINALI=$2 TC5=$3 TALK=$4 OUT=$5
HELD_OUT=${HELD_OUT:-marvin,sheila,house,bird,wow,zero,one,five,eight}
MIN_TOKENS=${MIN_TOKENS:-25}
PY=${PY:-python}
mkdir -p "$OUT"
$PY - "$MINI" "$MINALI" "$TC5" "$OUT/data" "$HELD_OUT" "$MIN_TOKENS" <<'PYEOF'
import collections, os, shutil, sys, zlib
from pathlib import Path
mini, minali, tc5, out = map(Path, sys.argv[1:5])
held, min_tokens = set(sys.argv[5].split(",")), int(sys.argv[6])
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
tokens = collections.Counter(f.parent.name for f in tc5.glob("*/*.wav"))
for word, n in tokens.items():  # read words with enough tokens to be a class; never a held-out word
    if n >= min_tokens and len(word) >= 3 and word not in held and word.isalpha():
        for f in sorted((tc5 / word).glob("*.wav")):
            link(f, word, f.name)
print(f"{len(count)} words, {sum(count.values())} clips; fewest {min(count.values())}, most {max(count.values())}")
PYEOF
$PY -m speechlstm recipe recipes/embedder.toml --out-dir "$OUT" --var data="$OUT/data" --var talk="$TALK" \
  --var aligned="$TC5"
$PY -m speechlstm make-embedder "$OUT/embedder-words.pt" --clips "$MINI" --clips "$TC5" --talk "$TALK" \
  --skip "$HELD_OUT" --out "$OUT/embedder.pt"
