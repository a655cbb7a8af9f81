"""Fetch CMeKG (the MIT-licensed dump inside PyPI `pycmekg==0.2.5`) into the cache, verified by sha256.

The package's code is never imported or run: pip only downloads the sdist, and `cmekg.pkl` is
extracted from the tarball and later read with a restricted unpickler (see readers.py).
CMeKG: Chinese Medical Knowledge Graph, Peking University et al.; PyCMeKG is MIT-licensed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from ktune.errors import IntegrityError, KBError
from ktune.paths import cache_dir

log = logging.getLogger(__name__)

PACKAGE = "pycmekg==0.2.5"
SDIST = "PyCMeKG-0.2.5.tar.gz"
SDIST_SHA256 = "f9ef3704c19b767973f58f4c3bd50bf46ea175b4859184f4b2777e328d8b90a9"
MEMBER = "PyCMeKG-0.2.5/pyCMeKG/model/cmekg.pkl"
PICKLE_SHA256 = "eb0ab98b384b4272feead720bbb5f262715973589004d8a5093c5020d954c4b5"
ATTRIBUTION = "CMeKG (Peking University et al.), from PyPI PyCMeKG 0.2.5, MIT licence"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_cmekg(source: str | Path | None = None, cache: Path | None = None) -> Path:
    """Return the path of a verified `cmekg.pkl`, downloading the sdist with pip when needed.

    `source` may be a local sdist or pickle (for machines without a package index).
    """
    cache = Path(cache or cache_dir() / "cmekg")
    target = cache / "cmekg.pkl"
    if source is None and target.exists() and sha256_file(target) == PICKLE_SHA256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    if source is not None and Path(source).suffix == ".pkl":
        _verify(Path(source), PICKLE_SHA256)
        return Path(source)
    sdist = Path(source) if source is not None else _download(cache)
    _verify(sdist, SDIST_SHA256)
    tmp = cache / f".cmekg.pkl.tmp{os.getpid()}"
    with tarfile.open(sdist, "r:gz") as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            raise KBError(f"{sdist} does not contain {MEMBER}")
        tmp.write_bytes(member.read())
    _verify(tmp, PICKLE_SHA256)
    os.replace(tmp, target)
    return target


def _download(cache: Path) -> Path:
    sdist = cache / SDIST
    if sdist.exists():
        return sdist
    log.info("downloading %s with pip into %s", PACKAGE, cache)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", PACKAGE, "-d", str(cache)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not sdist.exists():
        raise KBError(
            f"could not download {PACKAGE} with pip (exit {res.returncode}): {res.stderr.strip()[-400:]}\n"
            f"fix: check the package index, or pass a local copy: `ktune kb import cmekg --cmekg-source {SDIST}`"
        )
    return sdist


def _verify(path: Path, expected: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise IntegrityError(f"{path}: sha256 {got} does not match the expected {expected}; delete it and retry")
