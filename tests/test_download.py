import hashlib
import io
import tarfile

import pytest

from speechlstm.download import download, fetch
from speechlstm.errors import DataError


def _tarball(tmp_path):
    src = tmp_path / "tarball.tar.gz"
    with tarfile.open(src, "w:gz") as tar:
        for name, data in (("./yes/abc_nohash_0.wav", b"RIFF....fake"), ("./testing_list.txt", b"yes/abc\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return src, hashlib.sha256(src.read_bytes()).hexdigest()


def test_download_verifies_and_extracts_a_local_tarball(tmp_path):
    src, digest = _tarball(tmp_path)
    dest = download(tmp_path / "data", url=src.as_uri(), sha256=digest, progress=False)
    assert (dest / "yes" / "abc_nohash_0.wav").read_bytes() == b"RIFF....fake"
    assert (dest / "testing_list.txt").exists()
    assert not (dest / src.name).exists()  # the tarball is removed after extraction
    assert download(dest, url=src.as_uri(), sha256=digest, progress=False) == dest  # idempotent


def test_bad_checksum_is_refused_and_removed(tmp_path):
    src, _ = _tarball(tmp_path)
    with pytest.raises(DataError, match="checksum mismatch"):
        download(tmp_path / "data", url=src.as_uri(), sha256="0" * 64, progress=False)
    assert not (tmp_path / "data" / src.name).exists()
    assert not (tmp_path / "data" / "yes").exists()


def test_fetch_resumes_a_partial_download(tmp_path):
    src = tmp_path / "blob.bin"
    payload = bytes(range(256)) * 4000
    src.write_bytes(payload)
    dest = tmp_path / "out.bin"
    (tmp_path / "out.bin.part").write_bytes(payload[:12345])  # an interrupted earlier try
    fetch(src.as_uri(), dest, progress=False)
    assert dest.read_bytes() == payload and not (tmp_path / "out.bin.part").exists()


def test_unreachable_url_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="cannot download"):
        download(tmp_path / "d", url=(tmp_path / "missing.tar.gz").as_uri(), sha256=None, progress=False)
