"""Fetch, verify (sha256), resume and extract the Speech Commands tarball."""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from .errors import DataError

BASE_URL = "http://download.tensorflow.org/data"
RELEASES = {  # version -> (file name, sha256), checksums as published with torchaudio's dataset
    "0.01": ("speech_commands_v0.01.tar.gz", "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d"),
    "0.02": ("speech_commands_v0.02.tar.gz", "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"),
}
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: Path, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, resuming from ``dest.part`` if it exists."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=60)
    except OSError as e:
        raise DataError(f"cannot download {url}: {e}") from None
    with resp:
        length = resp.headers.get("Content-Length")
        full = int(length) if length else None  # size of what this response carries
        if have and getattr(resp, "status", None) == 206:
            full = have + full if full is not None else None  # the server resumed for us
        elif have and url.startswith("file:"):
            resp.read(have)  # file:// ignores Range: skip the part we already have
        else:
            have = 0  # no resume support: start over
        with part.open("ab" if have else "wb") as f, tqdm(
            total=full, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not progress
        ) as bar:
            for block in iter(lambda: resp.read(_CHUNK), b""):
                f.write(block)
                bar.update(len(block))
    os.replace(part, dest)
    return dest


def download(dest: str | os.PathLike, version: str = "0.02", url: str | None = None,
             sha256: str | None = None, progress: bool = True) -> Path:
    """Download and extract Speech Commands into ``dest``; returns ``dest``.

    ``url``/``sha256`` override the official release (a mirror, or a local
    ``file://`` tarball). The tarball is kept in ``dest`` until it verifies.
    """
    if url is None:
        if version not in RELEASES:
            raise DataError(f"unknown version {version!r}; one of {', '.join(RELEASES)}")
        name, official = RELEASES[version]
        url, sha256 = f"{BASE_URL}/{name}", sha256 or official
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    marker = dest / ".speechlstm-extracted"
    if marker.exists():
        return dest
    tarball = dest / Path(urllib.request.url2pathname(url.rsplit("/", 1)[-1])).name
    if not tarball.exists():
        fetch(url, tarball, progress)
    if sha256:
        got = sha256_file(tarball)
        if got != sha256.lower():
            tarball.unlink()
            raise DataError(f"checksum mismatch for {url}: expected {sha256}, got {got}; "
                            "the download was removed, run again")
    try:
        with tarfile.open(tarball) as tar:
            members = tar.getmembers()
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            for m in tqdm(members, desc="extracting", unit="file", disable=not progress):
                tar.extract(m, dest, **kwargs)
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"cannot extract {tarball}: {e}") from None
    marker.write_text(url + "\n")
    tarball.unlink()
    return dest
