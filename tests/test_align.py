"""Corpus alignment with PocketSphinx on the real LibriSpeech sample."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import LIBRISPEECH_SAMPLE, needs
from speechlstm import read_audio

pytest.importorskip("pocketsphinx", reason="PocketSphinx is not installed (pip install 'speechlstm[align]')")
pytestmark = needs(LIBRISPEECH_SAMPLE)


def test_corpus_command_aligns_words_into_clips_and_caches(tmp_path):
    out = tmp_path / "words"
    cmd = [sys.executable, "-m", "speechlstm", "corpus", str(LIBRISPEECH_SAMPLE), "--out", str(out), "--quiet",
           "--jobs", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "8 utterances: 8 aligned now, 0 from the cache; 3 skipped for words outside the dictionary" in done.stdout
    assert "morlands (1)" in done.stdout  # what was skipped is named
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert len(rows) > 100 and {"no", "up"} <= {r["word"] for r in rows}
    source = {u: None for u in {r["utterance"] for r in rows}}
    for r in rows[:40]:  # each clip is the aligned stretch of its utterance (+30 ms a side), centred in 1 s
        clip, rate = sf.read(out / r["file"], dtype="float32")
        assert rate == 16000 and len(clip) == 16000
        spk, chap = r["utterance"].split("-")[:2]
        if source[r["utterance"]] is None:
            source[r["utterance"]] = read_audio(LIBRISPEECH_SAMPLE / spk / chap / f"{r['utterance']}.flac", 16000)[0]
        x = source[r["utterance"]]
        a = int((float(r["start_ms"]) - 30) * 16) if float(r["start_ms"]) >= 30 else 0
        b = int((float(r["end_ms"]) + 30) * 16)
        at = (16000 - (b - a)) // 2
        np.testing.assert_allclose(clip[at : at + b - a], x[a:b], atol=1 / 16384)
        assert not clip[:at].any() and not clip[at + b - a :].any()
        assert 10 <= float(r["end_ms"]) - float(r["start_ms"]) <= 940
    lines = [json.loads(x) for x in (out / "alignments.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and sum("oov" in x for x in lines) == 3
    again = subprocess.run(cmd + ["--words", "commands"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 aligned now, 8 from the cache" in again.stdout
    words = {r["word"] for r in csv.DictReader(open(out / "manifest.csv"))}
    assert words and words <= {"yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"}


def test_word_order_and_timing_follow_the_transcript(tmp_path):
    from speechlstm.align import align_utterance
    from speechlstm.corpus import read_utterances

    utt = next(u for u in read_utterances(LIBRISPEECH_SAMPLE) if u.path.name.startswith("19-198-0004"))
    row = align_utterance(utt)
    words = [w for w, _, _ in row["words"]]
    assert " ".join(words).upper() == " ".join(utt.text.split())
    times = [(s, e) for _, s, e in row["words"]]
    assert all(s < e for s, e in times) and all(e1 <= s2 for (_, e1), (s2, _) in zip(times, times[1:]))
    duration = len(read_audio(utt.path, 16000)[0]) / 16
    assert times[-1][1] <= duration + 10


def test_phones_tile_each_word_and_pretrain_reads_them(tmp_path):
    out = tmp_path / "aligned"
    done = subprocess.run([sys.executable, "-m", "speechlstm", "corpus", str(LIBRISPEECH_SAMPLE), "--out", str(out),
                           "--quiet", "--words", "no"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(x) for x in (out / "alignments.jsonl").read_text().splitlines()]
    aligned = [r for r in rows if "oov" not in r]
    assert len(aligned) == 5
    from speechlstm.pretrain import PHONES

    for row in aligned:
        phones = row["phones"]
        assert phones[0][1] == 0 and all(a[2] == b[1] for a, b in zip(phones, phones[1:]))  # no gaps, no overlaps
        assert {p for p, _, _ in phones} <= set(PHONES)
        for word, start, end in row["words"]:  # a word's phones start and end with it, none of them silence
            inside = [p for p in phones if start <= p[1] and p[2] <= end]
            assert inside and inside[0][1] == start and inside[-1][2] == end
            assert "SIL" not in {p for p, _, _ in inside}
    assert [p for p, _, _ in next(r for r in aligned if r["id"] == "19-198-0004")["phones"][1:6]] == \
        ["CH", "AE", "P", "T", "ER"]  # "chapter"

    enc = tmp_path / "encoder.pt"
    done = subprocess.run([sys.executable, "-m", "speechlstm", "pretrain", str(LIBRISPEECH_SAMPLE), "--aligned",
                           str(out), "--out", str(enc), "--epochs", "1", "--max-steps", "2", "--quiet",
                           "--set", "pretrain.validation_pct=40", "--set", "model.hidden_size=16"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "from 1 speakers" in done.stdout and "held-out frame accuracy" in done.stdout
    from speechlstm.checkpoint import load_encoder

    e = load_encoder(enc)
    assert e.model.hidden_size == 16 and e.phones == list(PHONES) and e.provenance["speakers"] == 1


def test_audio_the_transcript_cannot_fit_is_a_failed_row_not_a_crash(tmp_path):
    """PocketSphinx finds no path (its segments are None) when the audio is far too short for
    the transcript, as for 34 of speechocean762's 5,000 recordings: that utterance fails, the rest align."""
    from speechlstm.align import align_utterance
    from speechlstm.corpus import Utterance

    short = tmp_path / "19-1-0000.wav"
    sf.write(short, (0.01 * np.random.default_rng(0).standard_normal(1600)).astype(np.float32), 16000)
    row = align_utterance(Utterance(short, "19", "BY YOUR LEAVE THE LITTLE HOUSE STOOD ON THE HILL BY THE SEA"))
    assert row == {"id": "19-1-0000", "speaker": "19", "words": [], "phones": []}
