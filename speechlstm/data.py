"""Speech Commands: index over the dataset's own layout, speaker-disjoint
splits, the commands12 / words35 tasks, a memory-mapped int16 clip cache and
a batch iterator that never decodes a wav file twice."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from .config import DEFAULT_FEATURES, default_cache_dir
from .audio import pad_or_trim, read_audio, wav_files
from .errors import AudioError, ConfigError, DataError
from .labels import COMMANDS10, SILENCE, UNKNOWN

NOISE_DIR = "_background_noise_"
SPLITS = ("train", "validation", "test")
CACHE_VERSION = 1
EVAL_UNKNOWN_RATIO = 0.1  # validation/test: unknown clips per command clip, whatever training uses
_MAX_WAVS_PER_CLASS = 2**27 - 1  # from the dataset's README


def speaker_id(filename: str) -> str:
    """'yes/0a7c2a8d_nohash_1.wav' -> '0a7c2a8d' (everything before _nohash_)."""
    return re.sub(r"_nohash_.*$", "", os.path.basename(filename))


def speaker_fold(filename: str, folds: int) -> int:
    """The cross-validation fold of a clip's speaker: a stable hash, as the dataset's own rule."""
    return int(hashlib.sha1(("fold:" + speaker_id(filename)).encode("utf-8")).hexdigest(), 16) % folds


def hash_split(filename: str, validation_pct: float = 10.0, testing_pct: float = 10.0) -> str:
    """The dataset README's rule: a stable hash of the speaker picks the split,
    so one speaker's clips never cross splits and the split never changes."""
    digest = hashlib.sha1(speaker_id(filename).encode("utf-8")).hexdigest()
    pct = (int(digest, 16) % (_MAX_WAVS_PER_CLASS + 1)) * (100.0 / _MAX_WAVS_PER_CLASS)
    if pct < validation_pct:
        return "validation"
    if pct < validation_pct + testing_pct:
        return "test"
    return "train"


@dataclass(frozen=True)
class Clip:
    rel: str  # "word/speaker_nohash_n.wav", the form the list files use (extra data: absolute)
    word: str
    split: str
    synthetic: bool = False  # from an extra (e.g. TTS) directory: training only
    more: bool = False  # more clips of the same dataset (--more-data): training only


@dataclass
class SpeechCommandsIndex:
    """Every clip of a Speech Commands tree (v0.01 or v0.02) with its split."""

    root: Path
    clips: list[Clip]
    noise_files: list[Path]
    split_source: str  # "lists" or "hash"

    @property
    def words(self) -> list[str]:
        return sorted({c.word for c in self.clips if not c.synthetic})

    @classmethod
    def scan(cls, root: str | os.PathLike) -> "SpeechCommandsIndex":
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: not a directory")
        word_dirs = word_folders(root)
        if not word_dirs:
            raise DataError(f"{root}: no word folders (expected the Speech Commands layout yes/, no/, ...)")
        val_list, test_list = root / "validation_list.txt", root / "testing_list.txt"
        if val_list.is_file() and test_list.is_file():
            split_of = {rel: "validation" for rel in read_list(val_list)}
            split_of.update({rel: "test" for rel in read_list(test_list)})
            source = "lists"
        else:
            split_of, source = None, "hash"
        clips = []
        for d in word_dirs:
            for f in wav_files(d):
                rel = f"{d.name}/{f.name}"
                split = split_of.get(rel, "train") if split_of is not None else hash_split(rel)
                clips.append(Clip(rel, d.name, split))
        if not clips:
            raise DataError(f"{root}: word folders hold no .wav files")
        noise = wav_files(root / NOISE_DIR) if (root / NOISE_DIR).is_dir() else []
        return cls(root, clips, noise, source)

    def with_folds(self, folds: int, fold: int) -> None:
        """Speaker k-fold cross-validation: each of the dataset's training or validation clips
        goes to validation when its speaker falls in ``fold``, else to training. --more-data
        clips stay training clips, but not those of a held-out speaker (so that runs with and
        without them validate on the same clips, and no speaker crosses). The testing split
        and extra (synthetic) clips keep theirs."""
        held_out = [speaker_fold(c.rel, folds) == fold for c in self.clips]
        self.clips = [c if c.synthetic or c.split == "test" else
                      replace(c, split="validation" if out else "train")
                      for c, out in zip(self.clips, held_out) if not (c.more and out)]

    def add_training_dir(self, root: str | os.PathLike, same_dataset: bool = False) -> int:
        """Add every ``word/*.wav`` under ``root`` as training clips. Returns how many were added.

        ``same_dataset=False``: extra clips from elsewhere (`speechlstm synth` output,
        aligned read speech), kept apart as ``synthetic``. ``True``: more Speech Commands
        clips (same recordings, same ``<speaker>_nohash_<n>.wav`` names) that join the
        dataset's own training clips, except those of speakers the dataset's hash rule
        puts in its testing split (the canonical test set)."""
        root = Path(root).resolve()
        if not root.is_dir():
            raise DataError(f"{root}: not a directory")
        found = [Clip(str(f), d.name, "train", synthetic=not same_dataset, more=same_dataset)
                 for d in word_folders(root)
                 for f in wav_files(d)
                 if not (same_dataset and hash_split(f"{d.name}/{f.name}") == "test")]
        if not found:
            raise DataError(f"{root}: no word folders with .wav files" + (" of training speakers" if same_dataset
                                                                           else ""))
        self.clips += found
        return len(found)


def word_folders(root: Path) -> list[Path]:
    """The word folders of a Speech Commands-layout tree, sorted (not ``_background_noise_``, not hidden)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def task_labels(task: str, words: list[str]) -> list[str]:
    if task == "commands12":
        return [SILENCE, UNKNOWN, *COMMANDS10]
    if task == "words35":
        return sorted(words)
    raise DataError(f"unknown task {task!r} (commands12 or words35)")


# --------------------------------------------------------------------------- cache


@dataclass
class ClipCache:
    """All clips decoded once to int16, fixed length, in one memory-mapped file."""

    waves: np.ndarray  # (n_readable, clip_samples) int16 memmap
    rows: dict[str, int]  # rel -> row
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (rel, reason)

    @classmethod
    def build(cls, index: SpeechCommandsIndex, sample_rate: int, clip_samples: int,
              cache_dir: str | os.PathLike | None = None, progress: bool = True) -> "ClipCache":
        cache_dir = Path(cache_dir or default_cache_dir())
        cache_dir.mkdir(parents=True, exist_ok=True)
        key = _cache_key(index, sample_rate, clip_samples)
        data_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
        if data_path.is_file() and meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            waves = np.load(data_path, mmap_mode="r")
            return cls(waves, {rel: i for i, rel in enumerate(meta["rows"])},
                       [tuple(s) for s in meta["skipped"]])

        def decode(clip: Clip) -> np.ndarray | str:
            try:
                x, _ = read_audio(index.root / clip.rel, sample_rate)
            except AudioError as e:
                return str(e)
            return np.round(pad_or_trim(x, clip_samples) * 32767).astype(np.int16)

        tmp = data_path.with_suffix(f".tmp{os.getpid()}.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16,
                                        shape=(len(index.clips), clip_samples))
        rows, skipped = [], []
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            decoded = pool.map(decode, index.clips, chunksize=64)
            for clip, x in tqdm(zip(index.clips, decoded), total=len(index.clips),
                                desc="decoding clips", unit="clip", disable=not progress):
                if isinstance(x, str):
                    skipped.append((clip.rel, x))
                else:
                    out[len(rows)] = x
                    rows.append(clip.rel)
        out.flush()
        del out
        if skipped:  # shrink to the readable rows
            full = np.load(tmp, mmap_mode="r")
            np.save(data_path.with_suffix(".part.npy"), full[: len(rows)])
            del full
            os.replace(data_path.with_suffix(".part.npy"), data_path)
            tmp.unlink()
        else:
            os.replace(tmp, data_path)
        meta_path.write_text(json.dumps({"root": str(index.root), "rows": rows, "skipped": skipped}))
        return cls(np.load(data_path, mmap_mode="r"), {rel: i for i, rel in enumerate(rows)},
                   [tuple(s) for s in skipped])


def _cache_key(index: SpeechCommandsIndex, sample_rate: int, clip_samples: int) -> str:
    """Changes whenever a file is added, removed, resized or touched."""
    h = hashlib.sha1(f"v{CACHE_VERSION}|{index.root.resolve()}|{sample_rate}|{clip_samples}".encode())
    for clip in index.clips:
        st = (index.root / clip.rel).stat()
        h.update(f"|{clip.rel}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


# --------------------------------------------------------------------------- task splits


@dataclass(frozen=True)
class SamplingConfig:
    """How a training epoch is drawn (``train.sampling``): the shares of ``_silence_``,
    ``_unknown_`` and extra clips per real command clip (evaluation: always 1/10 each)."""

    silence_ratio: float = 0.1  # silence clips per command clip (1/12 of the total)
    unknown_ratio: float = 0.1  # unknown clips per command clip in training
    synth_ratio: float = 0.0  # extra (--extra-data) command clips per real command clip; their other words
    # come with them at unknown_ratio of those
    extra_unknown_ratio: float = 0.0  # other words from --extra-data per real command clip, a share of their
    # own beside the dataset's unknown_ratio (e.g. force-aligned read speech, wake words). (Pooling them with
    # the dataset's own other words, which they then outnumber, was measured and not kept: model card.)

    folds: int = 0  # > 1: speaker k-fold cross-validation over the dataset's training and validation
    # speakers (its testing split and extra data untouched; SpeechCommandsIndex.with_folds); this run
    # validates on fold ``fold``
    fold: int = 0
    dev_all: bool = False  # train on every dev speaker: the validation list's clips join training (the
    # shipped model, once cross-validation has chosen the recipe and its epochs; validation figures are
    # then of clips it trained on, and ``optim.keep = "last"``)

    def __post_init__(self) -> None:
        for name in ("silence_ratio", "unknown_ratio", "synth_ratio", "extra_unknown_ratio"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.folds == 1 or self.folds < 0 or (self.folds and not 0 <= self.fold < self.folds):
            raise ConfigError(f"folds must be 0 (the dataset's lists) or >= 2, with 0 <= fold < folds; got "
                              f"folds={self.folds}, fold={self.fold}")
        if self.dev_all and self.folds:
            raise ConfigError("dev_all trains on every dev speaker; it cannot hold a fold out (folds must be 0)")



@dataclass
class SplitSet:
    """One split as rows into the cache (-1 = a silence clip made from noise)."""

    rows: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


class SpeechCommands:
    """The commands12 or words35 task over one dataset directory."""

    def __init__(self, root: str | os.PathLike, task: str = "commands12", *, sampling: SamplingConfig | None = None,
                 sample_rate: int = DEFAULT_FEATURES.sample_rate, clip_samples: int = DEFAULT_FEATURES.clip_samples,
                 cache_dir: str | os.PathLike | None = None, seed: int = 0, progress: bool = True,
                 extra_dirs: tuple[str | os.PathLike, ...] = (), more_dirs: tuple[str | os.PathLike, ...] = ()):
        sampling = sampling or SamplingConfig()
        self.index = SpeechCommandsIndex.scan(root)
        self.task, self.seed, self.sampling = task, seed, sampling
        self.labels = task_labels(task, self.index.words)
        for extra in extra_dirs:
            self.index.add_training_dir(extra)
        for more in more_dirs:
            self.index.add_training_dir(more, same_dataset=True)
        if sampling.folds:
            self.index.with_folds(sampling.folds, sampling.fold)
        self.clip_samples = clip_samples
        self.cache = ClipCache.build(self.index, sample_rate, clip_samples, cache_dir, progress)
        self.noise = [read_audio(p, sample_rate)[0] for p in self.index.noise_files]
        if task == "commands12" and sampling.silence_ratio > 0 and not self.noise:
            raise DataError(f"{root}: commands12 needs {NOISE_DIR}/ to make _silence_ clips")
        label_of = {w: i for i, w in enumerate(self.labels)}
        self._known: dict[str, tuple[list[int], list[int]]] = {}  # split -> (rows, labels)
        self._unknown_pool: dict[str, list[int]] = {}
        self._synth: tuple[list[int], list[int]] = ([], [])  # known-word synthetic (rows, labels)
        self._synth_unknown: list[int] = []  # synthetic other words, when kept apart from the real ones
        self._synthetic_rows = {self.cache.rows[c.rel] for c in self.index.clips
                                if c.synthetic and c.rel in self.cache.rows}
        for split in SPLITS:
            rows, labels, pool = [], [], []
            for clip in self.index.clips:
                into = clip.split == split or (split == "train" and sampling.dev_all and clip.split == "validation")
                if not into or clip.rel not in self.cache.rows:
                    continue
                row = self.cache.rows[clip.rel]
                if clip.word in label_of:
                    target = self._synth if clip.synthetic else (rows, labels)
                    target[0].append(row)
                    target[1].append(label_of[clip.word])
                elif task == "commands12":
                    if clip.synthetic:
                        self._synth_unknown.append(row)
                    else:
                        pool.append(row)
            self._known[split], self._unknown_pool[split] = (rows, labels), pool

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self.cache.skipped

    def split(self, name: str, rng: np.random.Generator | None = None) -> SplitSet:
        """Rows and labels of a split. Silence/unknown clips are drawn with ``rng``
        (train: a fresh draw per epoch); without it the draw is fixed by the seed."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; one of {SPLITS}")
        rng = rng or np.random.default_rng([self.seed, SPLITS.index(name)])
        rows, labels = self._known[name]
        rows, labels = list(rows), list(labels)
        n_real, s = len(rows), self.sampling
        if name == "train" and s.synth_ratio > 0 and self._synth[0]:
            n_synth = min(math.ceil(s.synth_ratio * n_real), len(self._synth[0]))
            pick = rng.choice(len(self._synth[0]), size=n_synth, replace=False)
            rows += [self._synth[0][i] for i in pick]
            labels += [self._synth[1][i] for i in pick]
            if self._synth_unknown:  # the synthetic share has the real share's mix of other words
                other = _draw(rng, self._synth_unknown, s.unknown_ratio, n_synth)
                rows += other
                labels += [self.labels.index(UNKNOWN)] * len(other)
        if name == "train" and s.extra_unknown_ratio > 0 and self._synth_unknown:
            # other words of the extra folders as a share of their own, beside the dataset's (unknown_ratio)
            other = _draw(rng, self._synth_unknown, s.extra_unknown_ratio, n_real)
            rows += other
            labels += [self.labels.index(UNKNOWN)] * len(other)
        if self.task == "commands12":
            n_silence = math.ceil(s.silence_ratio * n_real)
            pool = self._unknown_pool[name]
            ratio = s.unknown_ratio if name == "train" else EVAL_UNKNOWN_RATIO
            unknown = _draw(rng, pool, ratio, n_real)
            rows += unknown + [-1] * n_silence
            labels += [self.labels.index(UNKNOWN)] * len(unknown) + [self.labels.index(SILENCE)] * n_silence
        return SplitSet(np.asarray(rows, dtype=np.int64), np.asarray(labels, dtype=np.int64))

    def capped_shares(self) -> list[str]:
        """The training shares that ask more clips an epoch than their pool holds: every clip of the
        pool is drawn then, and a larger share changes nothing (what ``train`` says at its start)."""
        n_real, s, out = len(self._known["train"][0]), self.sampling, []
        for key, share, pool, what in (
                ("unknown_ratio", s.unknown_ratio, self._unknown_pool["train"], "the dataset's other words"),
                ("extra_unknown_ratio", s.extra_unknown_ratio, self._synth_unknown, "the extra folders' other words")):
            asked = _wanted(share, n_real)
            if pool and asked > len(pool):
                out.append(f"train.sampling.{key} {share:g} asks {asked} clips an epoch ({n_real} command clips); "
                           f"{what} are {len(pool)}: every one is drawn")
        return out

    def unknown_set(self, name: str) -> SplitSet:
        """Every out-of-vocabulary clip of a real split, labelled _unknown_ (commands12):
        what the open-set (OOV) rate is measured on."""
        pool = self._unknown_pool[name] if self.task == "commands12" else []
        if name == "train":
            pool = [r for r in pool if r not in self._synthetic_rows]
        return SplitSet(np.asarray(pool, dtype=np.int64),
                        np.full(len(pool), self.labels.index(UNKNOWN) if pool else 0, dtype=np.int64))

    def split_sizes(self) -> dict[str, int]:
        return {name: len(self.split(name)) for name in SPLITS}

    def batches(self, split: SplitSet, batch_size: int, rng: np.random.Generator, shuffle: bool = False,
                rank: int = 0, world_size: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (waves (B, S) float32 in [-1, 1], labels (B,)) on the CPU. With
        ``world_size`` > 1, this process's shard of the (shuffled) order, as
        ``DistributedSampler`` cuts it: every rank gets as many rows (a few repeated)."""
        order = rng.permutation(len(split)) if shuffle else np.arange(len(split))
        if world_size > 1:
            shard = DistributedSampler(order, num_replicas=world_size, rank=rank, shuffle=False)
            order = order[list(shard)]
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            rows = split.rows[idx]
            waves = np.zeros((len(idx), self.clip_samples), dtype=np.float32)
            real = rows >= 0
            if real.any():
                sel = rows[real]
                sort = np.argsort(sel)  # memmap reads in file order
                chunk = np.empty((len(sel), self.clip_samples), dtype=np.int16)
                chunk[sort] = self.cache.waves[sel[sort]]
                waves[real] = chunk.astype(np.float32) / 32767.0
            if (~real).any():
                waves[~real] = silence_clips(self.noise, int((~real).sum()), self.clip_samples, rng)
            yield torch.from_numpy(waves), torch.from_numpy(split.labels[idx])


def _wanted(share: float, per: int) -> int:
    """How many clips a share of ``per`` command clips asks an epoch."""
    return math.ceil(share * per)


def _draw(rng: np.random.Generator, pool: list[int], share: float, per: int) -> list[int]:
    """``_wanted(share, per)`` distinct rows of ``pool`` (all of it, if it holds fewer)."""
    n = min(_wanted(share, per), len(pool))
    return list(rng.choice(pool, size=n, replace=False)) if n else []


def silence_clips(noise: list[np.ndarray], n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` background-noise crops at a random volume in [0, 1): the _silence_ class."""
    out = np.zeros((n, length), dtype=np.float32)
    if not noise:
        return out
    for i in range(n):
        x = noise[rng.integers(len(noise))]
        start = rng.integers(max(1, len(x) - length + 1))
        crop = x[start : start + length]
        out[i, : len(crop)] = crop * rng.uniform(0.0, 1.0)
    return out
