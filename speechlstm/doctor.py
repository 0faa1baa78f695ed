"""`speechlstm doctor`: does this install work? The torch/torchaudio pair, the
shipped model's front end built from its checkpoint, the runtime the recognizer
picks, and the optional parts (microphone, alignment). CI runs it right after
installing, so a broken pair fails there with its fix, not as a test error.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

from .errors import SpeechLSTMError
from .pins import pair_problem, versions_line


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str
    required: bool = True  # a failed required check makes the whole install fail


def check(runtime: bool = True) -> list[Finding]:
    """Every check, in order; those after a failed torch pair are not attempted (they would
    only fail the same way)."""
    problem = pair_problem()
    out = [Finding("torch pair", problem is None, problem or versions_line())]
    if problem:
        return out
    out.append(_front_end())
    if runtime and out[-1].ok:
        out.append(_runtime())
    out += [_optional("microphone (sounddevice + PortAudio)", _portaudio),
            _optional("corpus alignment (pocketsphinx)", lambda: _module("pocketsphinx"))]
    return out


@functools.lru_cache(maxsize=1)
def _shipped():
    from .checkpoint import load_checkpoint

    return load_checkpoint()


def _front_end() -> Finding:
    """The shipped model's MFCC front end, rebuilt from its checkpoint, on one second of a tone."""
    try:
        import numpy as np
        import torch

        from .features import MFCC

        ckpt = _shipped()
        f = ckpt.features
        t = torch.arange(f.clip_samples) / f.sample_rate
        with torch.inference_mode():
            mfcc = MFCC(f)(0.1 * torch.sin(2 * torch.pi * 440 * t)[None])  # (1, frames, n_mfcc)
        ok = mfcc.shape[-1] == f.n_mfcc and bool(np.isfinite(mfcc.numpy()).all())
        return Finding("front end", ok, f"torchaudio MFCC {tuple(mfcc.shape)} from {ckpt.source.name}")
    except Exception as e:  # noqa: BLE001  a broken install raises anything; the report names it
        return Finding("front end", False, f"{type(e).__name__}: {e}")


def _runtime() -> Finding:
    try:
        import numpy as np

        from .infer import Recognizer

        rec = Recognizer(_shipped(), device="cpu")  # the file the front end check read, not read again
        probs = rec.probabilities(np.zeros((1, rec.clip_samples), np.float32))
        ok = bool(np.isfinite(probs).all()) and abs(float(probs.sum()) - 1) < 1e-3
        return Finding("runtime", ok, rec.runtime)
    except Exception as e:  # noqa: BLE001
        return Finding("runtime", False, f"{type(e).__name__}: {e}")


def _module(name: str) -> str:
    if importlib.util.find_spec(name) is None:
        raise ImportError(f"{name} is not installed")
    return "installed"


def _portaudio() -> str:
    from .live import portaudio_version

    return portaudio_version()


def _optional(name: str, probe) -> Finding:
    try:
        return Finding(name, True, probe(), required=False)
    except (ImportError, OSError, SpeechLSTMError) as e:
        return Finding(name, False, str(e).splitlines()[0], required=False)


def report(findings: list[Finding]) -> tuple[str, bool]:
    """The findings as lines, and whether every required one passed."""
    lines = [f"{'ok' if f.ok else ('FAIL' if f.required else 'absent'):<7}{f.name}: {f.detail}" for f in findings]
    return "\n".join(lines), all(f.ok for f in findings if f.required)
