"""Fetching CMeKG: checksums are enforced and a failed download names the offline fix (no network needed)."""

import subprocess

import pytest

from ktune.errors import IntegrityError, KBError
from ktune.kb.cmekg import PICKLE_SHA256, SDIST, SDIST_SHA256, fetch_cmekg


def test_a_local_pickle_with_the_wrong_sha256_is_refused(tmp_path):
    fake = tmp_path / "cmekg.pkl"
    fake.write_bytes(b"not the real pickle")
    with pytest.raises(IntegrityError, match=f"does not match the expected {PICKLE_SHA256}; delete it and retry"):
        fetch_cmekg(fake, cache=tmp_path / "cache")


def test_a_local_sdist_with_the_wrong_sha256_is_refused(tmp_path):
    fake = tmp_path / SDIST
    fake.write_bytes(b"not a tarball")
    with pytest.raises(IntegrityError, match=SDIST_SHA256):
        fetch_cmekg(fake, cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / "cmekg.pkl").exists()


def test_a_failed_pip_download_names_the_offline_fix(tmp_path, monkeypatch):
    def no_index(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"] and "pycmekg==0.2.5" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(subprocess, "run", no_index)
    with pytest.raises(KBError, match="--cmekg-source PyCMeKG-0.2.5.tar.gz") as err:
        fetch_cmekg(cache=tmp_path / "cache")
    assert "No matching distribution" in str(err.value)
