"""Transcribed corpora in both layouts: LibriSpeech and Kaldi data directories (speechocean762's)."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import LIBRISPEECH_SAMPLE, SR, make_fake_librispeech, needs
from speechlstm.corpus import read_utterances
from speechlstm.errors import DataError


def make_fake_kaldi(root, speakers=("SPEAKER0001", "SPEAKER0002"), seed=0):
    """speechocean762's layout: WAVE/SPEAKER/UTT.WAV, and train/ with wav.scp (paths from the
    root), text and utt2spk; each speaker's second sentence holds a command word."""
    rng = np.random.default_rng(seed)
    scp, text, utt2spk = [], [], []
    for s, spk in enumerate(speakers):
        (root / "WAVE" / spk).mkdir(parents=True, exist_ok=True)
        for k, sentence in enumerate(("WE CALL IT BEAR", "GO TO THE PARK")):
            utt = f"{s + 1:04d}{k:05d}"
            sf.write(root / "WAVE" / spk / f"{utt}.WAV", (0.1 * rng.standard_normal(SR)).astype(np.float32), SR)
            scp.append(f"{utt}\tWAVE/{spk}/{utt}.WAV")
            text.append(f"{utt}\t{sentence.lower() if k else sentence}")
            utt2spk.append(f"{utt}\t{spk}")
    (root / "train").mkdir()
    for name, rows in (("wav.scp", scp), ("text", text), ("utt2spk", utt2spk)):
        (root / "train" / name).write_text("".join(f"{r}\n" for r in rows))
    return root


def test_kaldi_data_dirs_read_like_librispeech(tmp_path):
    root = make_fake_kaldi(tmp_path / "so")
    utts = read_utterances(root)
    assert [(u.key, u.speaker, u.text) for u in utts] == [
        ("000100000", "SPEAKER0001", "WE CALL IT BEAR"), ("000100001", "SPEAKER0001", "GO TO THE PARK"),
        ("000200000", "SPEAKER0002", "WE CALL IT BEAR"), ("000200001", "SPEAKER0002", "GO TO THE PARK")]
    assert all(u.path.is_file() for u in utts)
    assert [u.key for u in read_utterances(root, without_words=("go",))] == ["000100000", "000200000"]
    both = tmp_path / "both"  # one root may hold both layouts (Kaldi paths from the data dir's parent)
    make_fake_kaldi(both / "so")
    make_fake_librispeech(both / "ls", speakers=("19",))
    assert len(read_utterances(both)) == 4 + 3


def test_kaldi_paths_may_be_relative_to_their_folder_and_bad_entries_say_which(tmp_path):
    root = make_fake_kaldi(tmp_path / "so")
    scp = root / "train" / "wav.scp"
    rows = scp.read_text().replace("WAVE/", "../WAVE/")  # relative to train/, not to the root
    scp.write_text(rows)
    assert len(read_utterances(root)) == 4
    scp.write_text(rows.replace("../WAVE/SPEAKER0002/000200001.WAV", "missing.wav"))
    with pytest.raises(DataError, match="000200001: no file missing.wav"):
        read_utterances(root)
    scp.write_text("000100000 sox in.flac -t wav - |\n")
    with pytest.raises(DataError, match="a command .* not a file"):
        read_utterances(root)
    (root / "train" / "text").unlink()
    with pytest.raises(DataError, match="no utterances"):
        read_utterances(root)


@needs(LIBRISPEECH_SAMPLE)
def test_corpus_command_aligns_a_kaldi_data_dir(tmp_path):
    """The real LibriSpeech sample, re-laid out as a Kaldi data dir: the same words come out."""
    pytest.importorskip("pocketsphinx", reason="PocketSphinx is not installed (pip install 'speechlstm[align]')")
    utts = read_utterances(LIBRISPEECH_SAMPLE)[:3]
    data = tmp_path / "kaldi" / "data"
    data.mkdir(parents=True)
    (data / "wav.scp").write_text("".join(f"{u.key} {u.path}\n" for u in utts))
    (data / "text").write_text("".join(f"{u.key} {u.text}\n" for u in utts))
    out = {}
    for name, root in (("kaldi", tmp_path / "kaldi"), ("libri", LIBRISPEECH_SAMPLE)):
        done = subprocess.run([sys.executable, "-m", "speechlstm", "corpus", str(root), "--out", str(tmp_path / name),
                               "--quiet", "--jobs", "1"], capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        out[name] = {p.relative_to(tmp_path / name).as_posix() for p in (tmp_path / name).glob("*/*.wav")}
    assert out["kaldi"] and out["kaldi"] <= out["libri"]  # its three utterances' clips, named alike
