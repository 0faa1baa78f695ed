#!/usr/bin/env bash
# Issue 12: using more real speech. Each idea over three seeds, two runs at a time, chosen on validation:
#   baseline    the shipped recipe (commands12.pt)
#   pool        + a large real unknown pool: every word of Mini LibriSpeech train-clean-5 (force-aligned),
#               the Precise wake-word/not-wake-word clips and the toy Speech Commands clips' other words join
#               the dataset's other words; unknown share 0.1 -> 0.4 of the command clips (seed 0 only: the
#               dataset's own 300 other words drown in 32k others, and its other words stop coming out _unknown_)
#   extra       the same clips as a share of their own (0.3 of the command clips) beside the dataset's
#               other words at their usual 0.1
#   pretrained  extra, the encoder first pretrained on phones of the same aligned hours (speechlstm pretrain)
#   distilled   pretrained, also learning the mean posteriors of the three pretrained models (weight 0.5)
#   toy_real    pretrained, the toy Speech Commands clips joining the dataset's own training clips
#               (--more-data: their other words in its unknown pool, their commands as positives)
#   hardneg     pretrained, with parts of command words as _unknown_: a fifth of the speech rows cut at a
#               window edge (at most half the word inside: _unknown_; 85% or more: the command; between: no loss)
#   positives   pretrained, with the command words of the same folders (read speech, toy clips) as extra
#               positives at 0.2 of the dataset's command clips
#   share60     pretrained, with the extra other words at 0.6 of the command clips instead of 0.3
#   joined      pretrained, with two different commands run together (first half of one, second half of
#               the other) as _unknown_ in place of a fifth of the command rows (train.windows.join_prob=0.2)
# pool, hardneg and joined were measured and not kept: their settings left the package after commit
# 6ad52f6 (which runs them); their figures stay in the model card.
#   bash experiments/learn_more.sh DATA_DIR EXTRA_DIR TC5_DIR OUT_DIR
# EXTRA_DIR: what experiments/corpora.sh wrote (tc5/, precise/, sc_toy/); TC5_DIR: train-clean-5 itself.
set -euo pipefail
DATA=$1 EXTRA=$2 TC5=$3 OUT=$4
mkdir -p "$OUT"
CLIPS="--extra-data $EXTRA/tc5 --extra-data $EXTRA/precise --extra-data $EXTRA/sc_toy"
EXTRA_SHARE="$CLIPS --set train.sampling.extra_unknown_ratio=0.3"
READ_SHARE="--extra-data $EXTRA/tc5 --extra-data $EXTRA/precise --set train.sampling.extra_unknown_ratio=0.3"
source "$(dirname "$0")/lib.sh"
export OUT DATA
# the encoder, pretrained once on the aligned hours, beside the first run (which decodes the clip cache)
[ -f "$OUT/encoder.pt" ] || OMP_NUM_THREADS=1 speechlstm pretrain "$TC5" --aligned "$EXTRA/tc5" --out "$OUT/encoder.pt" \
  --noise "$DATA/_background_noise_" --quiet > "$OUT/encoder.log" 2>&1 &
wait
{
  seeds baseline
  seeds pretrained $EXTRA_SHARE --init-from $OUT/encoder.pt
  seeds extra $EXTRA_SHARE
} | runs
TEACHERS=$(teachers pretrained)
seeds distilled $EXTRA_SHARE --init-from $OUT/encoder.pt $TEACHERS --set train.distill.weight=0.5 | runs
{
  seeds toy_real $READ_SHARE --more-data $EXTRA/sc_toy --init-from $OUT/encoder.pt
  seeds positives $EXTRA_SHARE --init-from $OUT/encoder.pt --set train.sampling.synth_ratio=0.2
  seeds share60 $CLIPS --set train.sampling.extra_unknown_ratio=0.6 --init-from $OUT/encoder.pt
} | runs
