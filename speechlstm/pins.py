"""The torch/torchaudio pair: which versions this install pins and whether the
installed ones belong together. Standard library only, nothing imported: it must
answer when ``import torchaudio`` itself is what fails.

torchaudio ships compiled code built against one torch release; a torchaudio of
another release (2.11.1 beside torch 2.11.0, say) fails to load
``libtorchaudio.so``. The pins live in ``pyproject.toml`` only: here they are read
back from the installed package's metadata (or, in a bare source checkout, from
``pyproject.toml`` itself).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

PAIR = ("torch", "torchaudio")
_PIN = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*==\s*([0-9][^;,\s]*)")


def installed(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def release(version: str) -> str:
    """"2.11.0+cu130" -> "2.11.0": the part two builds of one release share."""
    return version.split("+", 1)[0]


def pinned() -> dict[str, str]:
    """The exact pins (``name==version``) of speechlstm's own dependencies."""
    try:
        requirements = metadata.requires("speechlstm") or []
    except metadata.PackageNotFoundError:  # run from a checkout without installing it
        requirements = _pyproject_dependencies()
    out = {}
    for line in requirements:
        m = _PIN.match(line)
        if m and "extra ==" not in line:
            out[m.group(1).lower()] = m.group(2)
    return out


def _pyproject_dependencies() -> list[str]:
    path = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        import tomllib
    except ImportError:  # Python 3.10: no TOML reader in the standard library
        return []
    try:
        return list(tomllib.loads(path.read_text())["project"]["dependencies"])
    except (OSError, KeyError, ValueError):
        return []


def pair_problem() -> str | None:
    """None when torch and torchaudio are a pair that loads together (the same
    release, and the pinned one when the pins are known), else what is wrong and the fix."""
    have = {name: installed(name) for name in PAIR}
    pins = pinned()
    if all(n in pins for n in PAIR) and release(pins["torch"]) == release(pins["torchaudio"]):
        fix = "pip install " + " ".join(f"{n}=={pins[n]}" for n in PAIR)
    elif have["torch"]:  # no pins, or pins that are no pair themselves: match torchaudio to torch
        fix = f"pip install torchaudio=={release(have['torch'])}" + (
            f" (and pin both to one release: pyproject.toml pins torch=={pins['torch']}, "
            f"torchaudio=={pins['torchaudio']})" if all(n in pins for n in PAIR) else "")
    else:
        fix = "pip install torch torchaudio"
    missing = [n for n, v in have.items() if v is None]
    if missing:
        return f"{' and '.join(missing)} not installed; fix: {fix}"
    if release(have["torch"]) != release(have["torchaudio"]):
        return (f"torch {have['torch']} and torchaudio {have['torchaudio']} are not a pair (torchaudio's "
                f"compiled library loads only against the torch of its own release); fix: {fix}")
    off = [f"{n} {have[n]} (pinned {pins[n]})" for n in PAIR if n in pins and release(have[n]) != pins[n]]
    if off:
        return f"installed {', '.join(off)}; fix: {fix}"
    return None


def versions_line() -> str:
    return ", ".join(f"{n} {installed(n) or 'missing'}" for n in PAIR)
