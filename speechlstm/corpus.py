"""Reading transcribed speech corpora: the continuous read speech that streams put
between commands, that false alarms per hour are measured on, and that is aligned
into words and phones. Two layouts:

- LibriSpeech: ``speaker/chapter/speaker-chapter-NNNN.flac`` with
  ``speaker-chapter.trans.txt`` transcripts;
- Kaldi data directories (speechocean762, and most corpora prepared for Kaldi or
  ESPnet): a folder with ``wav.scp`` (``UTT path``), ``text`` (``UTT transcript``) and,
  optionally, ``utt2spk``; paths relative to the corpus root, the folder's parent or the folder."""

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
    key: str = ""  # its id (Kaldi's utterance id); default: the file name without its suffix

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.path.name.split(".")[0])


def speaker_half(speaker: str) -> str:
    """A fixed two-way split of speakers by a hash of the id ("validation" or "test"),
    so that calibration and the reported figure never hear the same talkers."""
    return ("validation", "test")[int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % 2]


def transcript_words(text: str) -> set[str]:
    """The words of a LibriSpeech transcript, upper case (apostrophes kept: DON'T)."""
    return set(re.findall(r"[A-Z']+", text.upper()))


def read_utterances(root: str | os.PathLike, half: str = "all",
                    without_words: Iterable[str] = ()) -> list[Utterance]:
    """Every transcribed utterance under ``root`` (either layout; LibriSpeech's first);
    ``half``: "all", or only the speakers of one ``speaker_half``; ``without_words``:
    leave out every utterance whose transcript holds one of these words (for speech
    where a detection of a command is a false alarm, the commands)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    if half not in ("all", "validation", "test"):
        raise DataError(f"half must be all, validation or test, got {half!r}")
    banned = {w.upper() for w in without_words}
    found = [u for u in [*_librispeech(root), *_kaldi(root)]
             if (half == "all" or speaker_half(u.speaker) == half) and not banned & transcript_words(u.text)]
    if not found:
        raise DataError(f"{root}: no utterances (LibriSpeech *.trans.txt beside .flac/.wav files, or Kaldi "
                        "wav.scp + text)"
                        + ("" if half == "all" else f" of the {half} half of the speakers")
                        + (" without the words " + ", ".join(sorted(banned)) if banned else ""))
    return found


def _librispeech(root: Path) -> list[Utterance]:
    found = []
    for trans in sorted(root.rglob("*.trans.txt")):
        for line in trans.read_text().splitlines():
            key, _, text = line.strip().partition(" ")
            audio = next((trans.parent / (key + s) for s in AUDIO_SUFFIXES if (trans.parent / (key + s)).is_file()),
                         None)
            if key and audio is not None:
                found.append(Utterance(audio, key.split("-")[0], text.strip()))
    return found


def _table(path: Path) -> dict[str, str]:
    """A Kaldi table: ``KEY rest of the line`` a line."""
    rows = (line.strip().split(maxsplit=1) for line in path.read_text().splitlines())
    return {r[0]: (r[1] if len(r) > 1 else "") for r in rows if r}


def _kaldi(root: Path) -> list[Utterance]:
    found = []
    for scp in sorted(root.rglob("wav.scp")):
        folder = scp.parent
        if not (folder / "text").is_file():
            continue
        texts = _table(folder / "text")
        speakers = _table(folder / "utt2spk") if (folder / "utt2spk").is_file() else {}
        for utt, where in _table(scp).items():
            if utt not in texts:
                continue
            if where.endswith("|") or " " in where.strip():
                raise DataError(f"{scp}: {utt} is a command ({where[:60]}), not a file: only plain paths are read")
            audio = next((p for p in (root / where, folder.parent / where, folder / where) if p.is_file()), None)
            if audio is None:
                raise DataError(f"{scp}: {utt}: no file {where} from {root}, {folder.parent} or {folder}")
            found.append(Utterance(audio, speakers.get(utt, utt.split("-")[0].split("_")[0]), texts[utt].upper(), utt))
    return found  # in wav.scp's order: Kaldi sorts it by utterance id
