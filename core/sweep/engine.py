"""The engine that trains runs in worker processes: a Dask distributed client.

:class:`Engine` is either embedded (a ``dask.distributed.LocalCluster`` of process workers, one
thread each, started and stopped with it) or connected to an existing cluster
(``dask scheduler`` / ``dask worker``) by its scheduler address. Scheduling, retries after a lost
worker (the scheduler reschedules its tasks) and worker management are Dask's; this module only
starts, describes and closes the client.

Where results go: the workers write the run store directly. On one machine that is the same
SQLite file in WAL mode the pages read; a cluster whose workers run on other machines must see the
store at the same path (``Engine.check_store`` verifies that each worker can open it and refuses
otherwise, so nothing trains into a store nobody reads). See ``docs/sweeps.md``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable

__all__ = ["Engine", "EngineError", "shared_local_engine", "close_shared_engine"]

log = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """The engine cannot start, the scheduler cannot be reached, or its workers cannot reach the store."""


class Engine:
    """A Dask client that trains runs in worker processes.

    Args:
        scheduler: ``tcp://HOST:PORT`` of a running ``dask scheduler``; None starts an embedded
            ``LocalCluster``.
        workers: embedded workers (processes, one thread each); None = the number of cores.
        timeout: seconds to wait for the scheduler (6: with the interpreter's start, a command that names an
            unreachable scheduler says so within 10 s).

    Raises:
        EngineError: the scheduler cannot be reached within ``timeout``, or the cluster cannot start.
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None, timeout: float = 6.0) -> None:
        import dask
        from distributed import Client, LocalCluster

        logging.getLogger("distributed").setLevel(max(logging.WARNING, logging.getLogger().level))
        self.scheduler = scheduler
        self._cluster: Any = None
        if workers is not None and workers < 1:
            raise EngineError(f"workers must be >= 1, got {workers}")
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise EngineError(f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s: "
                                  f"{type(exc).__name__}: {exc}") from None
            except ValueError as exc:
                raise EngineError(f"bad scheduler address {scheduler!r}: {exc}") from None
        else:
            n = workers or os.cpu_count() or 1
            try:
                # the scheduler runs in this process (the Explorer's server, for Live Training): its event-loop
                # health tick (20 ms by default) and system monitor (0.5 s) kept an idle server at 5-7% of a core;
                # at 0.5 s and 2 s, 2% (measured in benchmarks/README.md)
                with dask.config.set({"distributed.worker.daemon": False, "distributed.admin.tick.interval": "500ms",
                                      "distributed.admin.system-monitor.interval": "2s"}):
                    self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                 host="127.0.0.1", silence_logs=logging.WARNING,
                                                 # the scheduler's HTTP routes on a free loopback port
                                                 dashboard_address="127.0.0.1:0")
                self.client = Client(self._cluster, set_as_default=False)
            except Exception as exc:  # noqa: BLE001 - any failure to start is reported as one error
                if self._cluster is not None:
                    self._cluster.close()
                raise EngineError(f"cannot start a local Dask cluster of {n} workers: {exc}") from None

    # ------------------------------------------------------------------ description
    @property
    def n_workers(self) -> int:
        """Workers connected now."""
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def describe(self) -> str:
        """``local (N workers)`` or ``tcp://... (N workers)``."""
        where = self.scheduler or "local"
        return f"{where} ({self.n_workers} workers)"

    def wait_for_workers(self, n: int = 1, timeout: float = 30.0) -> None:
        """Block until ``n`` workers are connected.

        Raises:
            EngineError: fewer after ``timeout`` seconds.
        """
        try:
            self.client.wait_for_workers(n, timeout=timeout)
        except TimeoutError:
            raise EngineError(f"the cluster at {self.scheduler or 'local'} has {self.n_workers} workers after "
                              f"{timeout:g} s; {n} needed") from None

    def check_store(self, path: str | os.PathLike[str], store_id: str) -> None:
        """Verify that every worker sees this run store (same file, same ``store_id``) at ``path``.

        Raises:
            EngineError: a worker cannot open it (another machine without that file, a read-only path ...).
        """
        from .task import probe_store

        try:
            answers = self.client.run(probe_store, str(path), store_id, wait=True)
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"cannot ask the workers about the store: {exc}") from None
        bad = {w: a for w, a in answers.items() if a != "ok"}
        if bad:
            w, a = next(iter(bad.items()))
            raise EngineError(f"worker {w} cannot use the run store {path}: {a}. The workers write the store "
                              f"directly: run them where that path is this store (see docs/sweeps.md)")

    # ------------------------------------------------------------------ work
    def submit(self, fn: Callable[..., Any], *args: Any, key: str | None = None, **kwargs: Any) -> Any:
        """``client.submit`` (not pure: every call trains); returns the Dask future."""
        return self.client.submit(fn, *args, key=key, pure=False, **kwargs)

    def close(self) -> None:
        """Close the client (and the embedded cluster with its workers)."""
        try:
            self.client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SHARED: Engine | None = None
_SHARED_LOCK = threading.Lock()


def shared_local_engine(workers: int = 1) -> Engine:
    """The process-wide embedded engine (started on first use), e.g. for the runs a server starts.

    It outlives the sessions that use it: a run goes on when its browser closes.
    """
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is not None and _SHARED.client.status not in ("running", "connecting"):
            _SHARED = None
        if _SHARED is None:
            _SHARED = Engine(workers=workers)
            atexit.register(close_shared_engine)  # its worker ends with the process, not seconds later
        return _SHARED


def close_shared_engine() -> None:
    """Close the process-wide engine if it was started."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is not None:
            _SHARED.close()
            _SHARED = None


def store_path(store: Any) -> str:
    """The absolute path of a store (workers may start in another folder)."""
    p = getattr(store, "path", store)
    return str(Path(p).expanduser().resolve())
