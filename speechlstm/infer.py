"""Recognizer: the one inference path used by the CLI, evaluation, the app
and the live loop. Everything is rebuilt from the checkpoint alone."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .audio import AudioSource, pad_or_trim, read_audio, speech_window
from .checkpoint import Checkpoint, load_checkpoint
from .config import RUNTIMES
from .enroll import WordSpotter, merge
from .errors import ConfigError
from .labels import UNKNOWN
from .runtime import Runner, TorchRunner, WithFeatures, exported_kind, load_exported, quantize_int8, softmax
from .model import count_parameters, resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    top: list[tuple[str, float]]  # ranked (label, probability)
    offset_ms: float  # where the classified 1 s window starts in the input
    duration_ms: float  # length of the input

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def score(self) -> float:
        return self.top[0][1]

    def to_dict(self) -> dict:
        return {"label": self.label, "score": round(self.score, 6),
                "top": [{"label": k, "probability": round(p, 6)} for k, p in self.top],
                "offset_ms": round(self.offset_ms, 1), "duration_ms": round(self.duration_ms, 1)}


class Recognizer:
    """Speech command recognizer over a speechlstm checkpoint.

    >>> rec = Recognizer.from_checkpoint()          # the shipped commands12 model
    >>> rec.predict_file("yes.wav").label
    'yes'

    ``runtime`` (one of ``RUNTIMES``) says how the model runs: ``"auto"`` (the default)
    takes the fastest measured on the CPU, ONNX Runtime with int8 weights, exported
    once and cached (``runtime_note`` says where, or why it fell back to eager);
    ``"eager"`` is PyTorch fp32, ``"int8"`` PyTorch dynamic int8, ``"onnx"`` and
    ``"onnx-int8"`` ONNX Runtime. Exported ONNX / TorchScript files load too
    (``from_checkpoint("model.onnx")``). ``words``: enrolled words (``speechlstm enroll``),
    recognized beside the model's own labels (``labels`` lists the model's, then the words).
    """

    def __init__(self, checkpoint: Checkpoint, device: str = "auto", *, runtime: str = "auto",
                 int8: bool = False, threads: int | None = None, runner: Runner | None = None,
                 words: WordSpotter | None = None):
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.runtime_note = ""
        if runner is None:
            runtime = "int8" if int8 else runtime
            runner, self.runtime_note = self._runner(checkpoint, runtime, threads)
        self.runner = runner
        self.backend: str = runner.kind  # "fp32", "int8", "onnx", "onnx-int8" or "torchscript"
        self.parameters: int = int(checkpoint.provenance.get("parameters") or (
            count_parameters(checkpoint.build_model()) if checkpoint.state_dict else 0))
        self.sample_rate: int = checkpoint.features.sample_rate
        self.clip_samples: int = checkpoint.features.clip_samples
        self._hop = checkpoint.features.hop_samples
        self.set_words(words)

    def set_words(self, words: WordSpotter | None) -> None:
        """Recognize these enrolled words too (``None``: the model's labels only)."""
        if words is not None and words.embedder.sample_rate != self.sample_rate:
            raise ConfigError(f"the words' embedding model runs at {words.embedder.sample_rate} Hz, "
                              f"this model at {self.sample_rate} Hz")
        if words is not None and UNKNOWN not in self.checkpoint.labels:
            raise ConfigError("enrolled words are a share of the model's _unknown_ label: this model has none "
                              "(enrol words for a commands12 model)")
        self.words = words
        self.labels: list[str] = list(self.checkpoint.labels) + (list(words.names) if words else [])

    def _runner(self, ckpt: Checkpoint, runtime: str, threads: int | None) -> tuple[Runner, str]:
        """The runner for ``runtime`` on ``self.device``, and a note on where it came from."""
        if runtime not in RUNTIMES:
            raise ConfigError(f"unknown runtime {runtime!r}: one of {', '.join(RUNTIMES)}")
        cpu = self.device.type == "cpu"
        if runtime != "eager" and runtime != "auto" and not cpu:
            raise ConfigError(f"runtime {runtime!r} runs on the CPU only; use device='cpu'")
        if runtime == "int8":
            return TorchRunner(WithFeatures(quantize_int8(ckpt.build_model())), self.device, "int8"), ""
        note = ""
        if runtime in ("onnx", "onnx-int8") or (runtime == "auto" and cpu):
            from .export import cached_onnx  # writes the cached file: above this module

            try:
                runner, path, built = cached_onnx(ckpt, int8=runtime != "onnx", threads=threads)
                return runner, f"{'exported to' if built else 'cached at'} {path}"
            except Exception as e:  # noqa: BLE001  a failed export (a read-only cache, the exporter) must not
                if runtime != "auto":  # stop "auto" from recognizing: it falls back, saying why
                    raise
                note = f"eager: no ONNX Runtime export ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                log.warning("speechlstm runs %s", note)
        return TorchRunner(WithFeatures(ckpt.build_model()), self.device, "fp32"), note

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None, device: str = "auto", *,
                        runtime: str = "auto", int8: bool = False, threads: int | None = None,
                        words: str | os.PathLike | WordSpotter | None = None) -> "Recognizer":
        """Load a checkpoint (``None``: the shipped commands12 model, for clips and streams alike)
        or an exported ``.onnx`` / TorchScript file. ``runtime``: see the class; ``int8``: the same as
        ``runtime="int8"``; ``threads``: how many cores ONNX Runtime spreads a batch over
        (torch's count is global: torch.set_num_threads); ``words``: a words folder (or a
        ``WordSpotter``) of enrolled words to recognize too."""
        if words is not None and not isinstance(words, WordSpotter):
            words = WordSpotter.load(words)
        if path is not None and Path(path).is_file() and exported_kind(Path(path)):
            if int8 or runtime not in ("auto", "onnx", "onnx-int8"):
                raise ConfigError(f"{path} is an exported model: it runs as exported (quantize at export, --int8)")
            ckpt, runner = load_exported(path, resolve_device(device), threads)
            return cls(ckpt, device, runner=runner, words=words)
        return cls(load_checkpoint(path), device, runtime=runtime, int8=int8, threads=threads, words=words)

    @property
    def runtime(self) -> str:
        """How the model runs, in words: e.g. "onnx-int8 on cpu (cached at ...)"."""
        return f"{self.backend} on {self.device}" + (f" ({self.runtime_note})" if self.runtime_note else "")

    # ---------------------------------------------------------------- core
    def logits(self, clips: np.ndarray | torch.Tensor) -> np.ndarray:
        """(B, clip_samples) float waveforms at the model rate -> (B, n_model_labels) logits
        (the model's own labels: enrolled words have probabilities, not logits)."""
        x = np.asarray(clips.detach().cpu() if isinstance(clips, torch.Tensor) else clips, dtype=np.float32)
        return self.runner(x.reshape(-1, x.shape[-1]))[0]

    def probabilities(self, clips: np.ndarray | torch.Tensor) -> np.ndarray:
        """(B, clip_samples) float waveforms at the model rate -> (B, len(labels)) probabilities,
        the enrolled words' included (a share of ``_unknown_``: ``enroll.merge``)."""
        probs = softmax(self.logits(clips))
        if self.words is None or not self.words.names:
            return probs
        x = clips.detach().cpu().numpy() if isinstance(clips, torch.Tensor) else np.asarray(clips, np.float32)
        return merge(probs, self.checkpoint.labels, self.words.probabilities(x.reshape(len(probs), -1)))

    def mfcc(self, clip: np.ndarray) -> np.ndarray:
        """The model's own features of one clip: (frames, n_mfcc)."""
        return self.runner(np.asarray(clip, dtype=np.float32).reshape(1, -1), features=True)[1][0]

    def window(self, samples: np.ndarray) -> tuple[np.ndarray, int]:
        """Mono samples at the model rate -> (the 1 s clip around the speech, its start)."""
        start = speech_window(samples, self.clip_samples, self._hop)
        return pad_or_trim(samples[start : start + self.clip_samples], self.clip_samples), start

    def prepare(self, source: AudioSource, sample_rate: int | None = None) -> tuple[np.ndarray, int, int]:
        """Read, resample and window one input -> (clip, window start, input length) in samples."""
        samples, _ = read_audio(source, self.sample_rate, source_rate=sample_rate)
        clip, start = self.window(samples)
        return clip, start, len(samples)

    def _ranked(self, probs: np.ndarray, top_k: int, start: int, n: int) -> Prediction:
        order = np.argsort(-probs)[: max(1, top_k)]
        ms = 1000.0 / self.sample_rate
        return Prediction([(self.labels[i], float(probs[i])) for i in order], start * ms, n * ms)

    # ---------------------------------------------------------------- public
    def predict(self, waveform: AudioSource, sample_rate: int | None = None, top_k: int = 3) -> Prediction:
        """Any rate (``sample_rate``, default the model's), channel layout, dtype or length."""
        return self.predict_batch([waveform], sample_rate, top_k)[0]

    def predict_file(self, path: str | os.PathLike, top_k: int = 3) -> Prediction:
        return self.predict(path, None, top_k)

    def predict_batch(self, sources: Sequence[AudioSource], sample_rate: int | None = None,
                      top_k: int = 3, batch_size: int = 256) -> list[Prediction]:
        """Predict many clips (arrays at ``sample_rate`` or files) in batches."""
        prepared = [self.prepare(s, sample_rate) for s in sources]
        out: list[Prediction] = []
        for i in range(0, len(prepared), batch_size):
            chunk = prepared[i : i + batch_size]
            probs = self.probabilities(np.stack([c for c, _, _ in chunk]))
            out += [self._ranked(p, top_k, s, n) for p, (_, s, n) in zip(probs, chunk)]
        return out
