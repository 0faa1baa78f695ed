"""The install itself: torch and torchaudio are the pinned pair, `speechlstm doctor`
passes, and a mismatched pair is named with its fix instead of failing deep inside."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import torchaudio

from conftest import ROOT
from speechlstm.doctor import check, report
from speechlstm.pins import pair_problem, pinned, release


def test_torch_and_torchaudio_are_the_pinned_pair() -> None:
    pins = pinned()
    assert release(torch.__version__) == release(torchaudio.__version__)
    assert release(torch.__version__) == pins["torch"] and release(torchaudio.__version__) == pins["torchaudio"]
    text = (ROOT / "pyproject.toml").read_text()  # exact pins, never a range that lets them drift apart
    assert f'"torch=={pins["torch"]}"' in text and f'"torchaudio=={pins["torchaudio"]}"' in text
    assert pair_problem() is None


def test_doctor_passes() -> None:
    text, ok = report(check())
    assert ok, text
    assert "torch 2." in text and "MFCC (1, 101, 40)" in text and "onnx-int8 on cpu" in text


def _fake_torchaudio(root: Path, version: str) -> dict[str, str]:
    """A torchaudio of another release ahead on the path: its metadata, and a module that
    fails to load its library the way the real mismatch does."""
    dist = root / f"torchaudio-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torchaudio\nVersion: {version}\n")
    (root / "torchaudio").mkdir()
    (root / "torchaudio" / "__init__.py").write_text(
        "raise OSError('Could not load this library: .../torchaudio/lib/libtorchaudio.so')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(ROOT)])}


def test_mismatched_pair_is_named_with_its_fix(tmp_path: Path) -> None:
    env = _fake_torchaudio(tmp_path, "2.11.1")
    doctor = subprocess.run([sys.executable, "-m", "speechlstm", "doctor"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert doctor.returncode == 1
    assert "torchaudio 2.11.1 are not a pair" in doctor.stdout
    assert f"pip install torch=={pinned()['torch']} torchaudio=={pinned()['torchaudio']}" in doctor.stdout
    use = subprocess.run([sys.executable, "-c", "from speechlstm import Recognizer"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert use.returncode == 1
    last = use.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: torchaudio cannot load") and "not a pair" in last, use.stderr
