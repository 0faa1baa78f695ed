#!/bin/bash
# Issue 12's real corpora -> training folders in the Speech Commands layout, under $EXTRA
# (default /work/extra; nothing here is committed). Needs the repositories brought in with the
# search tool's `fetch` under $MIRROR (default /work/.mirror) and Mini LibriSpeech train-clean-5
# in the LibriSpeech layout at $TC5 (from zhangrui0712/Voice-Age).
#   $EXTRA/tc5/          every word of train-clean-5, force-aligned (speechlstm corpus), + alignments.jsonl
#   $EXTRA/sc_toy/       JackBL248/blspeech_commands toy_dataset (Speech Commands v0.02 clips) regrouped
#                        into word/ folders, minus every clip whose speaker the dataset's hash rule puts in
#                        its testing split (the canonical test set every evaluation here comes from)
#   $EXTRA/precise/      MycroftAI/Precise-Community-Data, public domain: not-wake-words/en, athena/en,
#                        amelia/en (never heysavant/: non-commercial), one folder each (all non-commands)
#   $EXTRA/minali/       Minali24/Identify-Speech-Commands audio/audio: 5,000 Speech Commands v0.01 clips
#   $EXTRA/speechocean762/, $EXTRA/so762/   jimbozhang/speechocean762 (WAVE, train, test) and its words,
#                        force-aligned
#   $EXTRA/words/        speechlstm wordset: minali's clips and the words of tc5 and so762, no speaker of
#                        $MINI (the commands model's own data) and none of the testing split: what
#                        word-level pretraining trains on (docs/training.md)
set -euo pipefail
EXTRA=${EXTRA:-/work/extra} MIRROR=${MIRROR:-/work/.mirror} TC5=${TC5:-/work/data/train-clean-5}
MINI=${MINI:-../shared/data/speech_commands_mini}
PY=${PY:-python}
gitdir() { local g=$MIRROR/$1/repo; [[ -d $g/.git ]] && g=$g/.git; echo "$g"; }
mkdir -p "$EXTRA"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git --git-dir="$(gitdir JackBL248+blspeech_commands)" archive HEAD toy_dataset | tar -x -C "$tmp"
rm -rf "$EXTRA/sc_toy"
$PY - "$tmp/toy_dataset" "$EXTRA/sc_toy" <<'PYEOF'
import shutil, sys
from pathlib import Path
from speechlstm.data import hash_split
src, out = Path(sys.argv[1]), Path(sys.argv[2])
kept = dropped = 0
for f in sorted(src.rglob("*.wav")):
    word, rest = f.name.split("_", 1)  # yes_0a7c2a8d_nohash_1.wav
    if hash_split(f"{word}/{rest}") == "test":
        dropped += 1
        continue
    (out / word).mkdir(parents=True, exist_ok=True)
    shutil.copy(f, out / word / rest)
    kept += 1
print(f"sc_toy: kept {kept}, dropped {dropped} clips of testing-split speakers")
PYEOF

rm -rf "$EXTRA/precise"
precise=$(gitdir MycroftAI+Precise-Community-Data)  # the .wav files only (the folders also hold big archives)
git --git-dir="$precise" ls-tree -r --name-only HEAD not-wake-words/en athena/en amelia/en | grep '\.wav$' \
  | xargs git --git-dir="$precise" archive HEAD | tar -x -C "$tmp"
for d in not-wake-words athena amelia; do
  mkdir -p "$EXTRA/precise/$d"
  find "$tmp/$d/en" -name '*.wav' -exec mv -t "$EXTRA/precise/$d" {} +
done
for d in "$EXTRA"/precise/*; do echo "precise/$(basename "$d"): $(ls "$d" | wc -l) clips"; done

$PY -m speechlstm corpus "$TC5" --out "$EXTRA/tc5" --words all --jobs "${JOBS:-2}"

rm -rf "$EXTRA/minali" "$EXTRA/speechocean762"
mkdir -p "$EXTRA/minali" "$EXTRA/speechocean762"
git --git-dir="$(gitdir Minali24+Identify-Speech-Commands)" archive HEAD audio/audio | tar -x -C "$EXTRA/minali"
git --git-dir="$(gitdir jimbozhang+speechocean762)" archive HEAD WAVE train test | tar -x -C "$EXTRA/speechocean762"
$PY -m speechlstm corpus "$EXTRA/speechocean762" --out "$EXTRA/so762" --words all --jobs "${JOBS:-2}"
rm -rf "$EXTRA/words"
$PY -m speechlstm wordset "$EXTRA/words" --commands "$EXTRA/minali/audio/audio" --corpus "$EXTRA/tc5" \
  --corpus "$EXTRA/so762" --exclude-speakers-of "$MINI" --noise "$MINI/_background_noise_"
