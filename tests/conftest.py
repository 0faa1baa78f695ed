"""Shared fixtures: a fabricated Speech Commands tree (kws_streaming style),
the real data in ../shared when it is there, and the shipped examples."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SPEECHLSTM_SHARED", ROOT.parent / "shared")) / "data"
MINI = SHARED / "speech_commands_mini"
TEST_MINI = SHARED / "speech_commands_test_mini"
EXAMPLES = ROOT / "examples"
SHIPPED = ROOT / "checkpoints" / "commands12.pt"

FAKE_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "cat", "tree", "wow")
SR = 16000


def word_tone(word: str, speaker: str, n: int = SR, rng: np.random.Generator | None = None) -> np.ndarray:
    """A 'word': a chord whose frequencies depend on the word, shifted per speaker."""
    rng = rng or np.random.default_rng(0)
    h = int(hashlib.md5(word.encode()).hexdigest(), 16)
    shift = 1.0 + (int(hashlib.md5(speaker.encode()).hexdigest(), 16) % 11 - 5) / 100
    t = np.arange(int(0.6 * SR)) / SR
    tone = sum(np.sin(2 * np.pi * (200 + (h >> (8 * k)) % 1800) * shift * t) for k in range(3)) / 3
    tone *= np.hanning(len(t))
    out = np.zeros(n, dtype=np.float32)
    start = (n - len(t)) // 2
    out[start : start + len(t)] = 0.5 * tone
    return out + 0.005 * rng.standard_normal(n).astype(np.float32)


def make_fake_dataset(root: Path, speakers: int = 8, per_speaker: int = 1, lists: bool = True,
                      seed: int = 0) -> Path:
    """Speech Commands layout: word folders, lists, _background_noise_."""
    rng = np.random.default_rng(seed)
    spk = [f"{i:08x}" for i in rng.integers(0, 2**32, speakers)]
    rels = []
    for word in FAKE_WORDS:
        (root / word).mkdir(parents=True, exist_ok=True)
        for s in spk:
            for k in range(per_speaker):
                rel = f"{word}/{s}_nohash_{k}.wav"
                sf.write(root / rel, word_tone(word, s, rng=rng), SR, subtype="PCM_16")
                rels.append(rel)
    (root / "_background_noise_").mkdir(exist_ok=True)
    sf.write(root / "_background_noise_" / "white_noise.wav",
             (0.1 * rng.standard_normal(3 * SR)).astype(np.float32), SR, subtype="PCM_16")
    if lists:  # one speaker for validation, one for test
        (root / "validation_list.txt").write_text("\n".join(r for r in rels if spk[0] in r) + "\n")
        (root / "testing_list.txt").write_text("\n".join(r for r in rels if spk[1] in r) + "\n")
    return root


@pytest.fixture
def fake_dataset(tmp_path: Path) -> Path:
    return make_fake_dataset(tmp_path / "sc")


@pytest.fixture(scope="session")
def runtime_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of exported runtimes for the whole run: each shipped model is exported
    once (the default runtime's first use), not once a test."""
    return tmp_path_factory.mktemp("runtime")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                    runtime_cache: Path) -> None:
    """A fresh cache a test (outside its tmp_path, which tests use as a dataset root), sharing the
    session's exported runtimes."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("SPEECHLSTM_CACHE", str(cache))
    (cache / "runtime").symlink_to(runtime_cache, target_is_directory=True)


def needs(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent")


needs_shared = needs(MINI)
needs_test_mini = needs(TEST_MINI)


LIBRISPEECH_SAMPLE = SHARED / "librispeech_sample"


def make_fake_librispeech(root: Path, speakers: tuple[str, ...] = ("19", "32", "103", "1089"),
                          seed: int = 0) -> Path:
    """LibriSpeech layout: speaker/chapter/speaker-chapter-NNNN.flac + .trans.txt;
    each speaker's second utterance says a command word (in its transcript)."""
    rng = np.random.default_rng(seed)
    for spk in speakers:
        chapter = root / spk / "100"
        chapter.mkdir(parents=True, exist_ok=True)
        lines = []
        for k, text in enumerate(("THE CAT SAT THERE", "HE SAID NO TO THEM", "A LONG WALK HOME")):
            key = f"{spk}-100-{k:04d}"
            words = [word_tone(w.lower(), spk, rng=rng) for w in text.split()]  # a second a word
            sf.write(chapter / f"{key}.flac", np.concatenate(words), SR, subtype="PCM_16")
            lines.append(f"{key} {text}")
        (chapter / f"{spk}-100.trans.txt").write_text("\n".join(lines) + "\n")
    return root
