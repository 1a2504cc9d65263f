"""Where the project keeps a user's files: the user data and cache directories of ``lowbit-explorer``.

One truth for every default location (the run store, checkpoints, the dataset download cache, the
source-hash caches), taken from :mod:`platformdirs` (what pip, jupyter and pooch use): on Linux
``$XDG_DATA_HOME/lowbit-explorer`` (default ``~/.local/share``) and ``$XDG_CACHE_HOME/lowbit-explorer``
(default ``~/.cache``); ``~/Library/Application Support`` and ``~/Library/Caches`` on macOS;
``%LOCALAPPDATA%`` on Windows. Nothing is written next to the installed package or into a folder the
user named for something else (``LOWBIT_STORE=~/runs.sqlite`` does not create ``~/checkpoints``).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["APP_NAME", "user_data_dir", "user_cache_dir", "checkpoints_root"]

#: the folder name used in the user data and cache directories
APP_NAME = "lowbit-explorer"


def user_data_dir() -> Path:
    """The user data directory of the project (the default run store and checkpoints live here)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def user_cache_dir() -> Path:
    """The user cache directory of the project (downloads and caches that can be rebuilt)."""
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def checkpoints_root() -> Path:
    """Where training checkpoints go: ``$LOWBIT_CHECKPOINTS`` if set, else ``checkpoints`` in the user
    data directory. A store's checkpoints are in ``<root>/<store id>/<run id>/`` (see
    :meth:`core.store.RunStore.checkpoint_dir`)."""
    env = os.environ.get("LOWBIT_CHECKPOINTS")
    return Path(env).expanduser() if env else user_data_dir() / "checkpoints"
