"""What the store's mixins (commands, sweeps) use of :class:`~core.store.RunStore`: declared once."""

from __future__ import annotations

import sqlite3
from typing import Any, Sequence

import pandas as pd

__all__ = ["StoreBase"]


class StoreBase:
    """The connection and the two helpers :class:`~core.store.RunStore` provides to its mixins."""

    @property
    def conn(self) -> sqlite3.Connection:  # provided by RunStore
        raise NotImplementedError

    def _tx(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:  # provided by RunStore
        raise NotImplementedError

    def _df(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:  # provided by RunStore
        raise NotImplementedError
