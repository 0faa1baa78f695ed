"""Synthetic training speech from the offline TTS engines Debian ships
(espeak-ng with its accents and voice variants, flite, festival), rendered at
varied speed and pitch into a Speech Commands-style tree ``word/<id>_nohash_0.wav``
(16 kHz, int16, the 1 s around the speech) that `speechlstm train --extra-data`
mixes into training. Every render is cached: a rerun only fills in what is missing."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from .audio import pad_or_trim, read_audio, speech_window
from .config import DEFAULT_FEATURES
from .errors import AudioError, DataError
from .labels import WORDS35

# Extra out-of-vocabulary speech for the _unknown_ class: everyday words and short phrases
# that are not commands (homophones of commands such as "know" or "write" left out on purpose).
EXTRA_UNKNOWN = ("hello", "okay", "thanks", "please", "maybe", "water", "music", "open", "close", "start",
                 "yellow", "later", "again", "coffee", "morning", "number", "window", "little", "seven up",
                 "what time is it", "turn it", "hey there", "sorry", "never", "yeah", "nope", "often",
                 "upon", "done", "gone", "lift", "light", "ride", "stuff", "step", "yet", "dawn", "goal",
                 "only", "wonder")

SAMPLE_RATE = DEFAULT_FEATURES.sample_rate
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
                  "en-029", "en-us-nyc")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")


@dataclass(frozen=True)
class Render:
    engine: str  # "espeak-ng", "flite" or "festival"
    voice: str
    speed: float  # 1.0 = the engine's normal rate; > 1 faster
    pitch: float  # 1.0 = the voice's normal pitch

    def key(self, text: str) -> str:
        raw = f"{self.engine}|{self.voice}|{self.speed:.3f}|{self.pitch:.3f}|{text}"
        return hashlib.sha1(raw.encode()).hexdigest()[:12]


def available_engines() -> list[str]:
    return [e for e, exe in (("espeak-ng", "espeak-ng"), ("flite", "flite"), ("festival", "text2wave"))
            if shutil.which(exe)]


def espeak_variants() -> list[str]:
    """Voice variants espeak-ng knows (``+Alex``, ``+f3``, ...)."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True)
    names = [line.split()[3] for line in out.stdout.splitlines()[1:] if len(line.split()) >= 4]
    return [n for n in names if n.isascii()]


def plan(texts: tuple[str, ...], per_word: int, engines: list[str], seed: int = 0) -> list[tuple[str, Render]]:
    """``per_word`` renders of each text, engines taken in turn, voice, speed and
    pitch drawn with a seeded generator (the same plan every run)."""
    if not engines:
        raise DataError("no TTS engine found: install espeak-ng, flite or festival "
                        "(Debian: apt-get install espeak-ng flite festival festvox-kallpc16k)")
    rng = np.random.default_rng(seed)
    variants = espeak_variants() if "espeak-ng" in engines else []
    jobs = []
    for text in texts:
        for i in range(per_word):
            engine = engines[i % len(engines)]
            if engine == "espeak-ng":
                voice = f"{rng.choice(ESPEAK_ACCENTS)}+{rng.choice(variants)}" if variants else "en-us"
            elif engine == "flite":
                voice = str(rng.choice(FLITE_VOICES))
            else:
                voice = "kal_diphone"
            jobs.append((text, Render(engine, voice, float(rng.uniform(0.75, 1.35)),
                                      float(rng.uniform(0.75, 1.3)))))
    return jobs


def _command(text: str, r: Render, wav: str) -> tuple[list[str], str | None]:
    """The engine's command line and its stdin."""
    if r.engine == "espeak-ng":
        return ["espeak-ng", "-v", r.voice, "-s", str(round(165 * r.speed)), "-p", str(round(50 * r.pitch)),
                "-w", wav, text], None
    if r.engine == "flite":
        return ["flite", "-voice", r.voice, "--setf", f"duration_stretch={1 / r.speed:.3f}",
                "--setf", f"int_f0_target_mean={110 * r.pitch:.1f}", "-t", text, "-o", wav], None
    scheme = (f"(voice_{r.voice}) (Parameter.set 'Duration_Stretch {1 / r.speed:.3f}) "
              f"(set! int_lr_params '((target_f0_mean {110 * r.pitch:.1f}) (target_f0_std 12) "
              f"(model_f0_mean 170) (model_f0_std 34)))")
    return ["text2wave", "-eval", scheme, "-o", wav], text


def render(text: str, r: Render) -> np.ndarray:
    """One utterance -> the 1 s int16 clip around its speech at 16 kHz."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "out.wav")
        cmd, stdin = _command(text, r, wav)
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0 or not os.path.isfile(wav):
            raise AudioError(f"{r.engine} failed on {text!r}: {proc.stderr.strip()[:200]}")
        x, _ = read_audio(wav, SAMPLE_RATE)
    if not np.any(np.abs(x) > 1e-3):
        raise AudioError(f"{r.engine} rendered silence for {text!r}")
    x = x / max(1e-6, float(np.abs(x).max())) * 0.5  # TTS levels differ wildly; training adds gain
    start = speech_window(x, SAMPLE_RATE, SAMPLE_RATE // 100)
    return np.round(pad_or_trim(x[start : start + SAMPLE_RATE], SAMPLE_RATE) * 32767).astype(np.int16)


def folder_name(text: str) -> str:
    return text.replace(" ", "_")


def synthesize(out: str | os.PathLike, texts: tuple[str, ...] = WORDS35 + EXTRA_UNKNOWN, per_word: int = 60,
               engines: list[str] | None = None, seed: int = 0, jobs: int | None = None,
               progress: bool = True) -> dict[str, int]:
    """Render (or reuse) ``per_word`` clips of each text into ``out``; write
    ``out/manifest.csv``. Returns counts: rendered, cached, failed."""
    out = Path(out)
    engines = available_engines() if engines is None else engines
    missing = sorted(set(engines) - set(available_engines()))
    if missing:
        raise DataError(f"TTS engine(s) not installed: {', '.join(missing)}")
    todo = plan(texts, per_word, engines, seed)
    counts = {"rendered": 0, "cached": 0, "failed": 0}

    def one(job: tuple[str, Render]) -> tuple[str, Render, Path, str | None]:
        text, r = job
        path = out / folder_name(text) / f"{r.engine.replace('-', '')}{r.key(text)}_nohash_0.wav"
        if path.is_file():
            return text, r, path, "cached"
        try:
            clip = render(text, r)
        except (AudioError, subprocess.TimeoutExpired) as e:
            return text, r, path, f"error: {e}"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.wav")
        sf.write(tmp, clip, SAMPLE_RATE, subtype="PCM_16")
        os.replace(tmp, path)
        return text, r, path, None

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        for text, r, path, status in tqdm(pool.map(one, todo), total=len(todo), desc="rendering",
                                          unit="clip", disable=not progress):
            if status and status.startswith("error"):
                counts["failed"] += 1
                tqdm.write(f"{status}")
                continue
            counts["cached" if status == "cached" else "rendered"] += 1
            rows.append({"file": str(path.relative_to(out)), "text": text, "engine": r.engine,
                         "voice": r.voice, "speed": round(r.speed, 3), "pitch": round(r.pitch, 3)})
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "text", "engine", "voice", "speed", "pitch"])
        w.writeheader()
        w.writerows(rows)
    return counts
