"""Corpus alignment: LibriSpeech-layout read speech + transcripts -> word
timings by PocketSphinx forced alignment (its bundled US-English acoustic
model and dictionary) -> word clips in the Speech Commands layout
(``word/<speaker>_nohash_<utterance>_<k>.wav``: the word's own samples, padded
into one second of silence), with ``alignments.jsonl`` (one line per aligned
utterance: the cache a rerun continues from) and ``manifest.csv``.

PocketSphinx (PyPI ``pocketsphinx`` 5.x, the ``align`` extra) is imported only
here and only when aligning. Utterances with words outside its dictionary are
counted, reported and skipped."""

from __future__ import annotations

import csv
import json
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from .audio import read_audio
from .config import DEFAULT_FEATURES
from .corpus import Utterance, read_utterances
from .labels import COMMANDS10
from .errors import DataError

SAMPLE_RATE = DEFAULT_FEATURES.sample_rate  # what the word clips are written at (PocketSphinx reads 16 kHz too)
FRAME_MS = 10.0  # PocketSphinx's frame rate: 100 frames a second
MARGIN_MS = 30.0  # kept either side of an aligned word
# words that sound like a command: with --words all they would teach "_unknown_" for the command itself
COMMAND_HOMOPHONES = frozenset({"know", "write", "wright", "rite", "wright's", "knowe"})


@dataclass
class AlignReport:
    utterances: int = 0
    aligned: int = 0  # this run
    cached: int = 0  # from an earlier run
    out_of_dictionary: int = 0  # utterances skipped: a word PocketSphinx does not know
    failed: int = 0  # alignment gave nothing
    unknown_words: dict[str, int] = field(default_factory=dict)
    clips: int = 0


_decoder = None


def _get_decoder():
    global _decoder
    if _decoder is None:
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise DataError("corpus alignment needs PocketSphinx: pip install 'speechlstm[align]' "
                            "(pocketsphinx 5.x)") from None
        _decoder = Decoder(samprate=SAMPLE_RATE, bestpath=False, loglevel="FATAL")
    return _decoder


def align_utterance(utt: Utterance) -> dict:
    """{"id", "speaker", "words": [[word, start_ms, end_ms], ...], "phones": [[phone,
    start_ms, end_ms], ...]} (phones: a second pass over the word alignment, ARPAbet
    as PocketSphinx spells it, SIL for pauses) or, for a transcript with words outside
    the dictionary, {"id", "oov": [...]}."""
    dec = _get_decoder()
    key = utt.key
    words = [w.lower() for w in re.findall(r"[A-Za-z']+", utt.text)]
    oov = sorted({w for w in words if dec.lookup_word(w) is None})
    if oov:
        return {"id": key, "speaker": utt.speaker, "oov": oov}
    x, _ = read_audio(utt.path, SAMPLE_RATE)
    dec.set_align_text(" ".join(words))
    dec.start_utt()
    pcm = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    failed = {"id": key, "speaker": utt.speaker, "words": [], "phones": []}
    segments = dec.seg()  # None: no path through the transcript fits the audio
    found = [[re.sub(r"\(\d+\)$", "", s.word), s.start_frame * FRAME_MS, (s.end_frame + 1) * FRAME_MS]
             for s in segments or [] if not s.word.startswith(("<", "["))]
    if len(found) != len(words):
        return failed
    dec.set_alignment()  # phone (and state) alignment within the word alignment just found
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    alignment = dec.get_alignment()
    if alignment is None:
        return failed
    phones = [[p.name, p.start * FRAME_MS, (p.start + p.duration) * FRAME_MS] for p in alignment.phones()]
    return {"id": key, "speaker": utt.speaker, "words": found, "phones": phones}


def _words_wanted(words: str) -> set[str] | None:
    if words == "all":
        return None  # every word but the COMMAND_HOMOPHONES
    if words == "commands":
        return set(COMMANDS10)
    return {w.strip().lower() for w in words.split(",") if w.strip()}


def align_corpus(root: str | os.PathLike, out: str | os.PathLike, words: str = "all", jobs: int | None = None,
                 max_word_ms: float = 1000.0, progress: bool = True) -> AlignReport:
    """Align every utterance under ``root`` (cached in ``out/alignments.jsonl``) and
    write the clips of the ``words`` ("all", "commands" or "a,b,c") into ``out``.
    "all" leaves out words that sound like a command (``COMMAND_HOMOPHONES``: "know",
    "write", ...), so that the folders can serve as other words (_unknown_) as they are."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    utts = read_utterances(root)
    cache_path = out / "alignments.jsonl"
    done: dict[str, dict] = {}
    if cache_path.is_file():
        for line in cache_path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if "oov" in row or "phones" in row:  # rows of older versions (words only) are aligned again
                    done[row["id"]] = row
    report = AlignReport(utterances=len(utts))
    todo = [u for u in utts if u.key not in done]
    report.cached = len(utts) - len(todo)
    with cache_path.open("a") as cache, ProcessPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        for row in tqdm(pool.map(align_utterance, todo, chunksize=4), total=len(todo), desc="aligning",
                        unit="utt", disable=not progress):
            cache.write(json.dumps(row) + "\n")
            cache.flush()
            done[row["id"]] = row
            report.aligned += 1
    by_id = {u.key: u for u in utts}
    wanted = _words_wanted(words)
    rows = []
    for key, row in tqdm(sorted(done.items()), desc="writing clips", unit="utt", disable=not progress):
        if key not in by_id:
            continue
        if "oov" in row:
            report.out_of_dictionary += 1
            for w in row["oov"]:
                report.unknown_words[w] = report.unknown_words.get(w, 0) + 1
            continue
        if not row["words"]:
            report.failed += 1
            continue
        picks = [(k, w) for k, w in enumerate(row["words"])
                 if (w[0] in wanted if wanted is not None else w[0] not in COMMAND_HOMOPHONES)]
        if not picks:
            continue
        x, _ = read_audio(by_id[key].path, SAMPLE_RATE)
        for k, (word, start_ms, end_ms) in picks:
            a = max(0, int((start_ms - MARGIN_MS) * SAMPLE_RATE / 1000))
            b = min(len(x), int((end_ms + MARGIN_MS) * SAMPLE_RATE / 1000))
            if b - a > max_word_ms * SAMPLE_RATE / 1000 or b <= a:
                continue
            clip = np.zeros(SAMPLE_RATE, np.float32)
            at = (SAMPLE_RATE - (b - a)) // 2
            clip[at : at + b - a] = x[a:b]
            rel = f"{word}/ls{row['speaker']}_nohash_{key}_{k}.wav"
            (out / word).mkdir(exist_ok=True)
            sf.write(out / rel, clip, SAMPLE_RATE, subtype="PCM_16")
            rows.append({"file": rel, "word": word, "speaker": row["speaker"], "utterance": key,
                         "start_ms": start_ms, "end_ms": end_ms})
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "word", "speaker", "utterance", "start_ms", "end_ms"])
        w.writeheader()
        w.writerows(rows)
    report.clips = len(rows)
    return report
