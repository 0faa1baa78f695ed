"""Word folders for word-level pretraining (``speechlstm wordset``): Speech Commands clips of
more speakers and the word clips of force-aligned read speech (``speechlstm corpus``), linked
into one Speech Commands layout whose every word folder is a class (``task = "words35"``).

A classifier trained on it hears hundreds of words from hundreds of speakers; its front end,
convolution and BiLSTM then start the commands model (``train --init-from``; model card,
"Speaker folds"). Rules, so that no evaluation hears a speaker it trained on:

- Speech Commands clips whose speaker the dataset's hash rule puts in its testing split are
  left out, and so are those listed in a tree's own ``testing_list.txt``;
- ``exclude_speakers_of``: every speaker of these trees is left out (the commands model's own
  dataset, so that a speaker fold of it is never heard here);
- the hash rule's validation speakers go to ``validation_list.txt`` (the epoch is chosen on them);
- a read word is a class when it has at least ``min_clips`` clips and is spelled with letters
  alone; a word of both kinds (a read "down") is one class.

Nothing is copied: the folder holds symbolic links (absolute paths)."""

from __future__ import annotations

import collections
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .audio import wav_files
from .data import NOISE_DIR, hash_split, read_list, speaker_id, word_folders
from .errors import DataError

MANIFEST = "wordset.json"


@dataclass(frozen=True)
class WordsetReport:
    words: int
    training: int
    validation: int
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> clips


def _word_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    found = word_folders(root)
    if not found:
        raise DataError(f"{root}: no word folders (expected word/*.wav)")
    return found


def build_wordset(out: str | os.PathLike, commands: tuple[str | os.PathLike, ...] = (),
                  corpora: tuple[str | os.PathLike, ...] = (), *, min_clips: int = 25,
                  exclude_speakers_of: tuple[str | os.PathLike, ...] = (),
                  noise_dir: str | os.PathLike | None = None) -> WordsetReport:
    """Link ``commands`` (Speech Commands trees: ``word/<speaker>_nohash_<n>.wav``) and ``corpora``
    (``speechlstm corpus`` outputs) into ``out``, a new or empty folder, with the lists, the
    background noise (``noise_dir``, default the first tree's ``_background_noise_``) and
    ``wordset.json`` (sources and counts)."""
    out = Path(out)
    if not commands and not corpora:
        raise DataError("a word set needs Speech Commands trees or aligned corpora")
    if min_clips < 1:
        raise DataError(f"min_clips must be >= 1, got {min_clips}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: exists and is not an empty folder; choose a new one")
    sources = [Path(p).resolve() for p in (*commands, *corpora)]
    banned = {speaker_id(f.name) for tree in exclude_speakers_of for d in _word_dirs(Path(tree))
              for f in wav_files(d)}
    picked: dict[str, tuple[Path, str]] = {}  # "word/name" -> (source file, split)
    left_out: collections.Counter[str] = collections.Counter()

    def add(word: str, f: Path, split: str) -> None:
        rel = f"{word}/{f.name}"
        if rel in picked:
            left_out["a file of that name already in its word's folder"] += 1
        else:
            picked[rel] = (f.resolve(), split)

    for tree in map(Path, commands):
        testing = set(read_list(tree / "testing_list.txt")) if (tree / "testing_list.txt").is_file() else set()
        for d in _word_dirs(tree):
            for f in wav_files(d):
                split = hash_split(f"{d.name}/{f.name}")
                if split == "test" or f"{d.name}/{f.name}" in testing:
                    left_out["a speaker of the testing split"] += 1
                elif speaker_id(f.name) in banned:
                    left_out["a speaker of --exclude-speakers-of"] += 1
                else:
                    add(d.name, f, split)
    clips = collections.defaultdict(list)
    for corpus in map(Path, corpora):
        for d in _word_dirs(corpus):
            clips[d.name] += wav_files(d)
    for word, files in sorted(clips.items()):
        if len(files) < min_clips or not word.isalpha():
            left_out[f"a read word with under {min_clips} clips or not all letters"] += len(files)
            continue
        for f in files:
            add(word, f, "train")
    if not picked:
        raise DataError("no clip is left for the word set (every one was left out: " +
                        ", ".join(f"{n} {why}" for why, n in left_out.items()) + ")")

    noise = Path(noise_dir) if noise_dir is not None else next(
        (Path(t) / NOISE_DIR for t in commands if (Path(t) / NOISE_DIR).is_dir()), None)
    out.mkdir(parents=True, exist_ok=True)
    if noise is not None:
        if not noise.is_dir():
            raise DataError(f"{noise}: not a directory")
        os.symlink(noise.resolve(), out / NOISE_DIR)
    for rel, (src, _) in picked.items():
        (out / rel).parent.mkdir(exist_ok=True)
        os.symlink(src, out / rel)
    validation = sorted(rel for rel, (_, split) in picked.items() if split == "validation")
    (out / "validation_list.txt").write_text("".join(f"{rel}\n" for rel in validation))
    (out / "testing_list.txt").write_text("")
    report = WordsetReport(len({rel.split("/")[0] for rel in picked}), len(picked) - len(validation),
                           len(validation), dict(left_out))
    (out / MANIFEST).write_text(json.dumps({
        "sources": [str(s) for s in sources], "min_clips": min_clips,
        "exclude_speakers_of": [str(Path(p).resolve()) for p in exclude_speakers_of],
        "words": report.words, "training": report.training, "validation": report.validation,
        "left_out": report.left_out}, indent=1) + "\n")
    return report
