"""Lowbit Explorer: ``panel serve apps/explorer.py`` (opens the Format Lab; training uses digits).

The store comes from ``$LOWBIT_STORE`` or the default user data directory (see docs/train-api.md).
"""

import sys
from pathlib import Path

import panel as pn

try:
    import explorer  # noqa: F401
except ImportError:  # running from a checkout that is not installed (no entry points: import the schemes)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import core.schemes  # noqa: F401

from explorer.app import RAW_CSS, create_app

pn.extension(raw_css=[RAW_CSS], notifications=True)

create_app().servable(title="Lowbit Explorer")
