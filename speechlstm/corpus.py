"""Reading speech corpora in the LibriSpeech layout
(``speaker/chapter/speaker-chapter-NNNN.flac`` with ``speaker-chapter.trans.txt``
transcripts): the continuous read speech that streams put between commands
and that false alarms per hour are measured on."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError

AUDIO_SUFFIXES = (".flac", ".wav")


@dataclass(frozen=True)
class Utterance:
    path: Path
    speaker: str
    text: str  # the transcript, upper case as LibriSpeech writes it


def speaker_half(speaker: str) -> str:
    """A fixed two-way split of speakers by a hash of the id ("validation" or "test"),
    so that calibration and the reported figure never hear the same talkers."""
    return ("validation", "test")[int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % 2]


def transcript_words(text: str) -> set[str]:
    """The words of a LibriSpeech transcript, upper case (apostrophes kept: DON'T)."""
    return set(re.findall(r"[A-Z']+", text.upper()))


def librispeech_utterances(root: str | os.PathLike, half: str = "all",
                           without_words: Iterable[str] = ()) -> list[Utterance]:
    """Every transcribed utterance under ``root``, sorted by file name; ``half``:
    "all", or only the speakers of one ``speaker_half``; ``without_words``: leave
    out every utterance whose transcript holds one of these words (for speech
    where a detection of a command is a false alarm, the commands)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    if half not in ("all", "validation", "test"):
        raise DataError(f"half must be all, validation or test, got {half!r}")
    banned = {w.upper() for w in without_words}
    found = []
    for trans in sorted(root.rglob("*.trans.txt")):
        for line in trans.read_text().splitlines():
            key, _, text = line.strip().partition(" ")
            if not key:
                continue
            audio = next((trans.parent / (key + s) for s in AUDIO_SUFFIXES if (trans.parent / (key + s)).is_file()),
                         None)
            speaker = key.split("-")[0]
            if (audio is not None and (half == "all" or speaker_half(speaker) == half)
                    and not banned & transcript_words(text)):
                found.append(Utterance(audio, speaker, text.strip()))
    if not found:
        raise DataError(f"{root}: no LibriSpeech-style utterances (*.trans.txt beside .flac/.wav files)"
                        + ("" if half == "all" else f" of the {half} half of the speakers")
                        + (" without the words " + ", ".join(sorted(banned)) if banned else ""))
    return found
