"""Picovoice's speech-to-intent benchmark (spontaneous coffee orders by 50+ speakers, Apache-2.0) as one
command-free recording, for false alarms an hour of spontaneous speech (issue 26):
    python experiments/picovoice_stream.py PICOVOICE/data/speech/clean picovoice_talk.wav
    speechlstm evaluate-stream --audio STREAMS/test.wav --labels STREAMS/test.csv --speech-audio picovoice_talk.wav
The orders are made from templates with no command word in them (its data/watson/corpus.txt);
the utterances are laid back to back, 300 ms of digital silence between them, in file-name order."""

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from speechlstm.audio import read_audio, wav_files

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("clips", type=Path, help="the folder of .wav utterances (data/speech/clean)")
p.add_argument("out", type=Path, help="the .wav to write")
p.add_argument("--sample-rate", type=int, default=16000)
args = p.parse_args()
gap = np.zeros(int(0.3 * args.sample_rate), np.float32)
parts = [x for f in wav_files(args.clips) for x in (read_audio(f, args.sample_rate)[0], gap)]
sf.write(args.out, np.concatenate(parts), args.sample_rate, subtype="PCM_16")
print(f"wrote {sum(map(len, parts)) / args.sample_rate / 3600:.2f} h of {len(parts) // 2} utterances to {args.out}")
