"""Your own words: enrol a word from 3-10 recordings, in about a second on a CPU.

A word becomes a linear head over an embedding model's representation of a 1 s clip
(the L2-normalised output of its encoder, ``representation``): it is fitted against
the model's own negatives (other words and read speech, stored in its checkpoint's
``enrollment`` entry) with the enrolment clips and copies of them at other speeds (a
stand-in for other voices), shifts and gains as the positives. Its threshold is the
score that a held-out half of the negatives clears at most ``false_accept_rate`` of
the time (default ``FALSE_ACCEPT_RATE``). The classifier and the words share one
decision: a word is a part of the classifier's ``_unknown_`` (``merge``), so a command
is never taken for a word.

    >>> spotter = enroll("lights", ["l1.wav", "l2.wav", "l3.wav", "l4.wav", "l5.wav"], "words/")
    >>> Recognizer.from_checkpoint(words="words/").predict_file("l6.wav").label
    'lights'
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch

from .audio import AudioSource, pad_or_trim, read_audio, resample, speech_window, wav_files
from .checkpoint import (DEFAULT_EMBEDDER, WORDS_FILE, Checkpoint, EnrolledWord, Words, load_checkpoint, load_words,
                         save_words, weights_digest)
from .errors import CheckpointError, EnrollError
from .labels import SILENCE, UNKNOWN

MIN_CLIPS, MAX_CLIPS = 3, 10
COPIES = 15  # augmented copies of each enrolment clip among the positives
SPEED = 0.12  # copies play at 1 +- up to this: pitch and formants move like another voice's
SHIFT_MS = 100.0
GAIN_DB = 6.0
# Of the held-out negatives, the share a word's threshold lets through: the largest of 0.015 / 0.02 /
# 0.025 / 0.03 whose validation trials (docs/research.md, "Encoder runs on validation trials") keep
# other words under 2% and read speech under 2 an hour with the shipped embedder (0.015: 1.79%, 1.50
# an hour, other speakers 79.8%).
FALSE_ACCEPT_RATE = 0.015
L2 = 1e-3
MIN_LEVEL_DB = -50.0  # a clip whose loudest 1 s is quieter than this holds no speech
QUIETER_DB = 20.0  # a clip this much under the recordings' median level: the word was not said into it
MAX_COMMAND_SHARE = 0.5  # more of the clips than this heard as one command: too close to it
# A word's merged probability that fires in a stream (its head alone is at 0.5 on its threshold). In
# benchmarks/enroll.py (14 enrolments, an hour of test-clean): 0.5 / 0.55 / 0.6 / 0.7 detect 69 / 62 /
# 52 / 34% of other speakers' recordings in a stream, with 3.9 / 2.3 / 1.1 / 0.07 false alarms an hour.
STREAM_THRESHOLD = 0.6
WORD_NAME = re.compile(r"^[a-z0-9][a-z0-9'_-]{0,31}$")


def representation(net: torch.nn.Module, clips: torch.Tensor, kind: str) -> torch.Tensor:
    """(B, S) waveforms -> (B, D) L2-normalised: "pool", the attention-pooled vector the
    classifier's head reads; "meanmax", the encoder's mean and max over time."""
    h = net.encode(net.features(clips))  # (B, T', 2H)
    if kind == "pool":
        z = net.pool(h)  # (B, 2H)
    elif kind == "meanmax":
        z = torch.cat([h.mean(dim=1), h.amax(dim=1)], dim=-1)  # (B, 4H)

    else:
        raise CheckpointError(f"unknown representation {kind!r}: pool or meanmax")
    return torch.nn.functional.normalize(z, dim=-1)


class Embedder:
    """An embedding model (a classifier checkpoint with an ``enrollment`` entry), run eagerly
    on the CPU: the same numbers at enrolment and at recognition, whatever runs the classifier."""

    def __init__(self, checkpoint: Checkpoint):
        if not checkpoint.enrollment:
            raise CheckpointError(f"{checkpoint.source}: no enrollment negatives in this checkpoint; "
                                  "words are enrolled on a model that has them (the shipped embedder)")
        self.checkpoint = checkpoint
        self.kind: str = checkpoint.enrollment["representation"]
        self.digest = weights_digest(checkpoint)
        self.net = checkpoint.build_model()
        self.sample_rate = checkpoint.features.sample_rate
        self.clip_samples = checkpoint.features.clip_samples
        self.negatives = checkpoint.enrollment["negatives"].float().numpy()  # (N, D)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None) -> "Embedder":
        return cls(load_checkpoint(path or DEFAULT_EMBEDDER))

    @torch.inference_mode()
    def __call__(self, clips: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(B, clip_samples) float32 at the model rate -> (B, D) float32."""
        x = np.asarray(clips, dtype=np.float32).reshape(-1, self.clip_samples)
        out = [representation(self.net, torch.from_numpy(x[i : i + batch_size]), self.kind).numpy()
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.negatives.shape[1]), np.float32)

    def window(self, samples: np.ndarray) -> np.ndarray:
        """Mono samples at the model rate -> the 1 s around the speech."""
        start = speech_window(samples, self.clip_samples, self.checkpoint.features.hop_samples)
        return pad_or_trim(samples[start : start + self.clip_samples], self.clip_samples)


class WordSpotter:
    """Enrolled words over one embedding model: ``probabilities(clips)`` -> (B, W), each the
    chance that the clip is that word (0.5 at its threshold)."""

    def __init__(self, embedder: Embedder, words: Words):
        if words.embedder_digest != embedder.digest:
            raise CheckpointError(
                f"{words.folder}: its words were enrolled on another embedding model "
                f"({words.embedder_digest[:12]}, this one is {embedder.digest[:12]}); enrol them again")
        self.embedder, self.words = embedder, words
        self._refresh()

    def _refresh(self) -> None:
        self.names = sorted(self.words.words)
        ws = [self.words.words[n] for n in self.names]
        d = self.embedder.negatives.shape[1]
        self.W = np.array([w.weights for w in ws], np.float32).reshape(len(ws), d)  # (W, D)
        self.b = np.array([w.bias - w.threshold for w in ws], np.float32)  # (W,): 0 at the threshold

    @classmethod
    def load(cls, folder: str | os.PathLike, embedder: Embedder | None = None) -> "WordSpotter":
        return cls(embedder or Embedder.from_checkpoint(), load_words(folder))

    def probabilities(self, clips: np.ndarray) -> np.ndarray:
        return self.probabilities_of(self.embedder(clips))

    def probabilities_of(self, z: np.ndarray) -> np.ndarray:
        """(B, D) embeddings (``Embedder``'s) -> (B, W) probabilities: the sigmoid of each
        word's margin over its threshold (> 0: heard)."""
        return 1.0 / (1.0 + np.exp(-np.clip(z @ self.W.T + self.b, -30, 30)))


def merge(probs: np.ndarray, labels: Sequence[str], words: np.ndarray) -> np.ndarray:
    """The classifier's (B, L) probabilities and the words' (B, W) -> (B, L + W). The words
    split ``_unknown_``'s mass: the likeliest word takes its probability of that share and
    the rest stay unknown, so the rows still sum to 1 and a word wins only where the
    classifier heard no command and the word cleared its threshold."""
    if words.shape[1] == 0:
        return probs
    if UNKNOWN not in labels:
        raise CheckpointError("enrolled words need a classifier with an _unknown_ label (the commands12 task)")
    u = list(labels).index(UNKNOWN)
    best = words.max(axis=1, keepdims=True)  # (B, 1)
    share = words / np.maximum(words.sum(axis=1, keepdims=True), 1e-12) * best  # (B, W), sums to best
    out = np.concatenate([probs, probs[:, u : u + 1] * share], axis=1)
    out[:, u] *= 1.0 - best[:, 0]
    return out


def add_negatives(checkpoint: Checkpoint, word_dirs: Sequence[str | os.PathLike], talk_dir: str | os.PathLike,
                  *, words: int = 1000, talk: int = 1000, kind: str = "pool", skip: Sequence[str] = (),
                  seed: int = 0, progress: bool = True) -> Checkpoint:
    """``checkpoint`` with an ``enrollment`` entry: the representation of ``words`` clips drawn
    from the word folders of ``word_dirs`` (Speech Commands layout; ``skip``: words left out,
    e.g. those a benchmark enrols) and ``talk`` 1 s windows of the read speech under
    ``talk_dir`` (``*.flac``/``*.wav``), stored as float16."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    files = []
    for d in map(Path, word_dirs):  # training clips only: none of the dataset's validation or testing lists
        listed = {line for name in ("validation_list.txt", "testing_list.txt") if (d / name).is_file()
                  for line in (d / name).read_text().split()}
        files += [f for w in sorted(d.iterdir()) if w.is_dir() and not w.name.startswith(("_", "."))
                  and w.name not in set(skip) for f in wav_files(w) if f"{w.name}/{f.name}" not in listed]
    talk_files = sorted(p for p in Path(talk_dir).rglob("*") if p.suffix in (".flac", ".wav"))
    if not files or not talk_files:
        raise EnrollError(f"negatives need word clips in {', '.join(map(str, word_dirs))} and read speech in "
                          f"{talk_dir} (found {len(files)} and {len(talk_files)} files)")
    emb = Embedder(dataclasses.replace(checkpoint, enrollment={"representation": kind, "negatives":
                                                               torch.zeros(1, 1)}))
    clips = []
    for f in tqdm(rng.choice(files, min(words, len(files)), replace=False), desc="negatives: words",
                  disable=not progress):
        clips.append(emb.window(read_audio(f, emb.sample_rate)[0]))
    for _ in tqdm(range(talk), desc="negatives: read speech", disable=not progress):
        x, _ = read_audio(talk_files[rng.integers(len(talk_files))], emb.sample_rate)
        start = int(rng.integers(0, max(1, len(x) - emb.clip_samples)))
        clips.append(pad_or_trim(x[start : start + emb.clip_samples], emb.clip_samples))
    z = emb(np.stack(clips))
    sources = [f"{len(files)} word clips of {', '.join(map(str, word_dirs))} ({min(words, len(files))} drawn)",
               f"{talk} windows of {talk_dir}"]
    return dataclasses.replace(checkpoint, enrollment={"representation": kind, "sources": sources,
                                                       "negatives": torch.from_numpy(z).half()})


# ------------------------------------------------------------------------- enrolling
def _augment(clips: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """(K, S) -> (K * (1 + COPIES), S): the clips, then copies at other speeds, shifts and gains."""
    n = clips.shape[1]
    out = [clips]
    for _ in range(COPIES):
        for clip in clips:
            speed = 1.0 + rng.uniform(-SPEED, SPEED)
            x = pad_or_trim(resample(clip, rate, round(rate / speed)), n)  # played faster: higher, shorter
            x = np.roll(x, int(rng.uniform(-SHIFT_MS, SHIFT_MS) * rate / 1000))
            out.append((x * 10 ** (rng.uniform(-GAIN_DB, GAIN_DB) / 20))[None])
    return np.concatenate(out).astype(np.float32)


def fit_head(positives: np.ndarray, negatives: np.ndarray, steps: int = 100) -> tuple[np.ndarray, float]:
    """Class-balanced L2 logistic regression (L-BFGS): (P, D), (N, D) -> (weights (D,), bias)."""
    x = torch.from_numpy(np.concatenate([positives, negatives]).astype(np.float32))
    y = torch.cat([torch.ones(len(positives)), torch.zeros(len(negatives))])
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    pos_weight = torch.tensor(len(negatives) / max(1, len(positives)))
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, pos_weight=pos_weight)
        loss = loss + L2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


def check_name(word: str, taken: Sequence[str]) -> str:
    name = word.strip().lower()
    if not WORD_NAME.match(name):
        raise EnrollError(f"{word!r} cannot name a word: use 1-32 letters, digits, ' - or _, starting with a "
                          "letter or digit")
    if name in taken:
        raise EnrollError(f"{name!r} is already one of the model's labels: enrol another word")
    return name


def enroll(word: str, sources: Sequence[AudioSource], folder: str | os.PathLike, *,
           embedder: Embedder | None = None, classifier=None, sample_rate: int | None = None,
           seed: int = 0, false_accept_rate: float = FALSE_ACCEPT_RATE) -> EnrolledWord:
    """Enrol ``word`` from 3-10 recordings (files or arrays at ``sample_rate``) into the words
    ``folder`` (created, or added to; a word enrolled before is replaced). ``classifier``:
    a ``Recognizer`` whose commands the word must not sound like (default: the shipped clip
    model). ``false_accept_rate``: the share of the embedder's held-out negatives the word's
    threshold lets through. Raises ``EnrollError`` with what to do for too few clips,
    silence, clips of different words, or a word too close to a command or to a word
    enrolled before."""
    embedder = embedder or Embedder.from_checkpoint()
    if classifier is None:
        from .infer import Recognizer  # the same row: infer imports this module at its top

        classifier = Recognizer.from_checkpoint(runtime="eager", device="cpu")
    folder = Path(folder)
    words = load_words(folder) if (folder / WORDS_FILE).is_file() else Words(embedder.digest, embedder.kind)
    if words.embedder_digest != embedder.digest:
        raise EnrollError(f"{folder}: its words were enrolled on another embedding model; use another folder")
    name = check_name(word, classifier.checkpoint.labels)
    if not 0.0 < false_accept_rate < 0.5:
        raise EnrollError(f"false_accept_rate {false_accept_rate}: give a share between 0 and 0.5 "
                          f"(default {FALSE_ACCEPT_RATE})")
    if not MIN_CLIPS <= len(sources) <= MAX_CLIPS:
        raise EnrollError(f"give {MIN_CLIPS} to {MAX_CLIPS} recordings of {name!r}, one word each "
                          f"(got {len(sources)}); 5 is a good number")
    names = [Path(s).name if isinstance(s, (str, os.PathLike)) else f"recording {i}" for i, s in enumerate(sources, 1)]
    clips = np.stack([embedder.window(read_audio(src, embedder.sample_rate, source_rate=sample_rate)[0])
                      for src in sources])  # (K, S)
    levels = 20 * np.log10(np.sqrt(np.mean(np.square(clips, dtype=np.float64), axis=1)) + 1e-10)  # (K,) dBFS
    median = float(np.median(levels))
    for what, level in zip(names, levels):
        if level < MIN_LEVEL_DB:
            raise EnrollError(f"{what}: no speech heard (its loudest second is at {level:.0f} dBFS): "
                              "record it again, closer to the microphone")
        if level < median - QUIETER_DB:
            raise EnrollError(f"{what}: {median - level:.0f} dB quieter than your other recordings "
                              "(a word said far away or not at all): record it again")
    _too_close_to_commands(name, clips, classifier)
    z = embedder(clips)  # (K, D)
    _same_word(name, z, names)
    others = {n: w for n, w in words.words.items() if n != name}
    if others:
        spotter = WordSpotter(embedder, Words(words.embedder_digest, words.representation, others))
        heard = spotter.probabilities(clips) > 0.5  # (K, W)
        j = int(heard.sum(axis=0).argmax())
        if heard[:, j].mean() > MAX_COMMAND_SHARE:
            raise EnrollError(f"{name!r} sounds like your word {spotter.names[j]!r} ({int(heard[:, j].sum())} "
                              f"of {len(clips)} recordings heard as it): remove that one first or choose another")
    rng = np.random.default_rng(seed)
    negatives = embedder.negatives
    order = rng.permutation(len(negatives))
    fit_part, held_out = negatives[order[: len(order) // 2]], negatives[order[len(order) // 2 :]]
    weights, bias = fit_head(embedder(_augment(clips, embedder.sample_rate, rng)), fit_part)
    threshold = float(np.quantile(held_out @ weights + bias, 1 - false_accept_rate))
    entry = EnrolledWord(name, [round(float(x), 6) for x in weights], round(bias, 6), round(threshold, 6),
                         [f"{name}/{i}.wav" for i in range(1, len(clips) + 1)],
                         datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                         [round(float(s), 4) for s in z @ weights + bias])
    shutil.rmtree(folder / name, ignore_errors=True)
    (folder / name).mkdir(parents=True)
    for rel, clip in zip(entry.clips, clips):
        sf.write(folder / rel, clip, embedder.sample_rate, subtype="PCM_16")
    words.words[name] = entry
    save_words(words, folder)
    return entry


def remove(word: str, folder: str | os.PathLike) -> None:
    """Remove an enrolled word and its clips from the words folder."""
    words = load_words(folder)
    name = word.strip().lower()
    if name not in words.words:
        raise EnrollError(f"{name!r} is not enrolled in {folder} (enrolled: {', '.join(sorted(words.words)) or 'none'})")
    del words.words[name]
    save_words(words, folder)
    shutil.rmtree(Path(folder) / name, ignore_errors=True)


def _too_close_to_commands(name: str, clips: np.ndarray, classifier) -> None:
    """Most clips heard as one command: the word would take that command's place."""
    top = classifier.logits(clips).argmax(axis=1)  # the classifier's own labels, not its enrolled words: (K,)
    for j in set(top.tolist()):
        label = classifier.checkpoint.labels[j]
        share = float(np.mean(top == j))
        if label not in (UNKNOWN, SILENCE) and share > MAX_COMMAND_SHARE:
            raise EnrollError(f"{name!r} sounds like the command {label!r} ({int(np.sum(top == j))} of "
                              f"{len(clips)} recordings heard as {label}): choose a word that sounds different")


def _same_word(name: str, z: np.ndarray, names: list[str]) -> None:
    """Each clip against the mean of the others: one far from them is another word."""
    k = len(z)
    for i in range(k):
        rest = np.delete(z, i, axis=0).mean(axis=0)
        sim = float(z[i] @ rest / (np.linalg.norm(rest) + 1e-12))
        if sim < SAME_WORD_SIMILARITY:
            raise EnrollError(f"{names[i]} does not sound like the other recordings of {name!r} (similarity "
                              f"{sim:.2f}, below {SAME_WORD_SIMILARITY}): record each one saying only {name!r}")


# Cosine of a clip to the mean of the others: under it, another word. Calibrated on 213 five-clip sets
# of one speaker and one word (Speech Commands v0.01 speakers the embedder never heard), and the same sets
# with one clip swapped for another word of that speaker: 0.3 catches 66% of the swapped clips and turns
# away 10% of the real sets (most of those hold a recording 20-40 dB quieter than the rest, now caught
# by QUIETER_DB first).
SAME_WORD_SIMILARITY = 0.3
