"""The dataset catalogue (``datasets/catalogue.toml``), the cache directory and file checks.

Owns: locating the catalogue and the download cache, SHA-256 verification, and downloads with a
progress bar (through ``pooch``). Offline or with ``download=False``, a missing file raises one
:class:`DatasetError` saying which files to put where.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tomllib
from pathlib import Path
from typing import Any

from core import userdirs

from .base import DatasetError

__all__ = [
    "catalogue",
    "catalogue_path",
    "cache_dir",
    "sha256_file",
    "check_sha256",
    "fetch",
]

log = logging.getLogger(__name__)

_CHECKOUT = Path(__file__).resolve().parents[2]
#: the repository's ``datasets/`` folder when running from a checkout (never site-packages/datasets,
#: which is another project's package)
_REPO_DATASETS = _CHECKOUT / "datasets" if (_CHECKOUT / "pyproject.toml").is_file() else None


def catalogue_path() -> Path:
    """The catalogue shipped with the package (``core/data/catalogue.toml``; in a checkout a link to
    ``datasets/catalogue.toml``)."""
    return Path(__file__).with_name("catalogue.toml")


def user_cache_dir() -> Path:
    """``datasets`` in the user cache directory of the project (:func:`core.userdirs.user_cache_dir`:
    ``$XDG_CACHE_HOME/lowbit-explorer`` or ``~/.cache/lowbit-explorer`` on Linux, ``~/Library/Caches`` on
    macOS, ``%LOCALAPPDATA%`` on Windows)."""
    return userdirs.user_cache_dir() / "datasets"


@functools.lru_cache(maxsize=1)
def catalogue() -> dict[str, Any]:
    """The parsed catalogue (an empty dict, with a warning, when the file is not there)."""
    path = catalogue_path()
    if not path.is_file():
        log.warning("dataset catalogue %s not found; checksums and downloads are unavailable", path)
        return {}
    with path.open("rb") as f:
        return tomllib.load(f)


def cache_dir(name: str) -> Path:
    """Default folder of dataset ``name``: ``$LOWBIT_DATA/<name>``, else ``datasets/cache/<name>`` in a
    checkout, else the user cache directory (:func:`user_cache_dir`)."""
    base = os.environ.get("LOWBIT_DATA")
    if base:
        root = Path(base).expanduser()
    elif _REPO_DATASETS is not None:
        root = _REPO_DATASETS / "cache"
    else:
        root = user_cache_dir()
    return root / name


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def check_sha256(path: Path, expected: str) -> None:
    """Raise :class:`DatasetError` when ``path``'s SHA-256 differs from ``expected``, or when ``path``
    cannot be read (permission denied, a folder, an I/O error)."""
    try:
        got = sha256_file(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DatasetError(f"cannot read {path}: {reason[:1].lower()}{reason[1:]}") from exc
    if got.lower() != expected.lower():
        raise DatasetError(
            f"checksum mismatch for {path}: SHA-256 is {got}, expected {expected} "
            "(the file is corrupt or not the published one; delete it and put the original there, "
            "or pass verify=False / --no-verify for your own files)"
        )


def fetch(name: str, filename: str, directory: Path, sha256: str | None, mirrors: list[str]) -> Path:
    """Download ``filename`` into ``directory`` from the first mirror that answers.

    Raises:
        DatasetError: every mirror failed (e.g. offline); the message says where to put the file.
    """
    import pooch  # local import: only needed when downloading

    directory.mkdir(parents=True, exist_ok=True)
    errors = []
    for base in mirrors:
        url = base + filename
        try:
            path = pooch.retrieve(
                url,
                known_hash=f"sha256:{sha256}" if sha256 else None,
                fname=filename,
                path=directory,
                progressbar=True,
            )
            return Path(path)
        except Exception as exc:  # noqa: BLE001 - any network/IO failure -> try the next mirror
            errors.append(f"{url}: {exc}")
    raise DatasetError(
        f"could not download {filename} for dataset {name!r} ({'; '.join(errors)}). "
        f"Offline? Put the file into {directory} (or point DataConfig.root / --data-root at a folder "
        "that has it)."
    )
