"""A run trained in a worker process, seen and steered through the run store.

:class:`RemoteRun` is what a server holds for a run it started: the run's row in the store, the
Dask future of the worker task that trains it, and the commands it sent. It has the parts of
:class:`core.train.Run`'s interface a page uses (``id``, ``status``, ``step``, ``config``,
``pause``/``resume``/``stop``/``update``, ``wait``), but every value comes from the store and
every control is a command row, so the server never trains and the run never depends on the page.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Mapping

from core.store import CommandKind, RunStatus, RunStore, is_final

__all__ = ["RemoteRun"]

log = logging.getLogger(__name__)


class RemoteRun:
    """A run in the store, trained elsewhere (see :meth:`submit`).

    Args:
        store: the run store.
        run_id: the run's id.
        config: its config (read from the store when None).
        future: the Dask future training it (kept so the task is not released).
    """

    #: seconds a read of the run's row stays fresh
    max_age: float = 0.05

    def __init__(self, store: RunStore, run_id: str, config: Any = None, future: Any = None) -> None:
        from core.train import RunConfig

        self.store = store
        self.id = run_id
        self.future = future
        row = store.get_run(run_id)
        self.config = config if config is not None else RunConfig.from_stored(row["config"])
        self._target = self.config
        self._row: dict[str, Any] = {}
        self._read_at = 0.0
        self._updates: dict[int, Any] = {}  # command seq -> target config it would give
        self._lock = threading.RLock()
        self._apply_row(row)

    @classmethod
    def submit(cls, config: Any, store: RunStore | str | None = None, engine: Any = None) -> "RemoteRun":
        """Queue ``config`` as a new run (status ``created``) and train it on ``engine`` (default: this
        process's one-worker local engine)."""
        from .engine import shared_local_engine, store_path
        from .task import train_run

        st = store if isinstance(store, RunStore) else RunStore(store)
        eng = engine or shared_local_engine(1)
        run_id = st.create_run(config.to_dict(), name=config.name, dataset=config.data.name, model=config.model.name,
                               scheme=config.scheme.name, epochs=config.epochs, status=RunStatus.CREATED.value)
        fut = eng.submit(train_run, store_path(st), run_id, config.to_dict(), config.threads or 1,
                         key=f"lowbit-run-{run_id}")
        return cls(st, run_id, config, fut)

    # ------------------------------------------------------------------ state from the store
    def refresh(self, max_age: float | None = None) -> dict[str, Any]:
        """Re-read the run's row (at most every ``max_age`` seconds) and the answers to its commands."""
        age = self.max_age if max_age is None else max_age
        if time.monotonic() - self._read_at < age:
            return self._row
        with self._lock:  # a page's thread and its feed's reader may both refresh
            cur = self.store.conn.execute("SELECT status, step, epoch, total_steps, final_test_acc, best_test_acc, "
                                          "error, pid FROM runs WHERE run_id=?", (self.id,))
            row = cur.fetchone()
            if row is not None:
                self._apply_row(dict(zip([c[0] for c in cur.description], row)))
            for seq in list(self._updates):
                ans = self.store.command(seq)
                if ans.get("acked"):
                    target = self._updates.pop(seq)
                    if str(ans.get("result", "")).startswith("applied"):
                        self.config = target
                    elif not self._updates:  # refused: later changes start from what the run uses
                        self._target = self.config
            self._check_future()
        return self._row

    def _apply_row(self, row: Mapping[str, Any]) -> None:
        self._row = {k: row.get(k) for k in ("status", "step", "epoch", "total_steps", "final_test_acc",
                                             "best_test_acc", "error", "pid")}
        self._read_at = time.monotonic()

    def _check_future(self) -> None:
        """A task that died before the run could record its end (a lost worker): the run is interrupted."""
        f = self.future
        if f is None or self._row.get("status") not in (RunStatus.CREATED.value,):
            return
        if f.status in ("error", "cancelled", "lost"):
            msg = f"the worker task ended: {f.status}"
            try:
                exc = f.exception(timeout=0) if f.status == "error" else None
                if exc is not None:
                    msg = f"{type(exc).__name__}: {exc}"
            except Exception:  # noqa: BLE001
                pass
            self.store.update_run(self.id, status=RunStatus.ERROR.value, ended=time.time(), error=msg)
            self._row["status"], self._row["error"] = RunStatus.ERROR.value, msg

    @property
    def status(self) -> str:
        return str(self.refresh().get("status") or RunStatus.CREATED.value)

    @property
    def step(self) -> int:
        return int(self.refresh().get("step") or 0)

    @property
    def epoch(self) -> int:
        return int(self.refresh().get("epoch") or 0)

    @property
    def total_steps(self) -> int:
        return int(self.refresh().get("total_steps") or 0)

    @property
    def progress(self) -> float:
        t = self.total_steps
        return min(1.0, self.step / t) if t else 0.0

    @property
    def error(self) -> str | None:
        e = self.refresh().get("error")
        return str(e) if e else None

    @property
    def data(self) -> Any:
        """Truthy once the worker has loaded the data (the total step count is known)."""
        return self.total_steps or None

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> str:
        """Block until the run ends (or ``timeout`` seconds); return the status."""
        end = None if timeout is None else time.monotonic() + timeout
        while not is_final(self.refresh(0.0).get("status") or ""):
            if end is not None and time.monotonic() >= end:
                break
            time.sleep(interval)
        return self.status

    # ------------------------------------------------------------------ controls
    def _send(self, kind: CommandKind, payload: dict[str, Any] | None = None) -> int:
        if is_final(self.status):
            raise RuntimeError(f"run {self.id} has ended ({self.status})")
        return self.store.send_command(self.id, kind, payload)

    def pause(self) -> int:
        """Ask the run to pause before its next step; returns the command's number."""
        return self._send(CommandKind.PAUSE)

    def resume(self) -> int:
        """Ask a paused run to continue."""
        return self._send(CommandKind.RESUME)

    def stop(self) -> int:
        """Ask the run to end before its next step (status ``stopped``)."""
        return self._send(CommandKind.STOP)

    def update(self, changes: Mapping[str, Any]) -> int:
        """Send a live config change (validated here first, as the run will); returns the command's number.

        Raises:
            ValueError: a key that cannot change live or an invalid value (nothing is sent).
            RuntimeError: the run has ended.
        """
        with self._lock:
            keys = self._target.normalise_keys(dict(changes))
            new = self._target.with_changes(keys, live=True)
            seq = self._send(CommandKind.UPDATE, {"changes": {k: (v.to_dict() if hasattr(v, "to_dict") else v)
                                                              for k, v in keys.items()}})
            self._target = new
            self._updates[seq] = new
            return seq

    def answer(self, seq: int) -> dict[str, Any]:
        """The run's answer to command ``seq``: ``acked`` (time, None until received), ``result``,
        ``applied_step``."""
        return self.store.command(seq)

    def __repr__(self) -> str:
        return f"RemoteRun(id={self.id!r}, status={self.status!r}, step={self.step})"
