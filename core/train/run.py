"""A live training run: :class:`Run` (see ``docs/train-api.md``).

Owns the worker thread that loads data, builds and converts the model, trains, evaluates, measures
telemetry, writes the store and notifies subscribers; and the controls that act on it between steps
(pause, resume, stop, live config updates). Nothing here needs a browser: dashboards only observe.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import sqlite3
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

import core
from core.data import DataBundle, load_dataset
from core.models import build_model
from core.store import CommandKind, RunStatus, RunStore, RunWriter, is_final
from core.store.access import sqlite_reason, write_error

from .checkpoint import load_checkpoint, restore_generators, save_checkpoint
from .config import RunConfig, lr_factor
from .context import StepContext, StepOutput
from .qlayers import assign, quantized_layers
from .schemes import Scheme
from .telemetry import Telemetry

__all__ = ["Run", "active_runs", "Callback"]

log = logging.getLogger(__name__)

Callback = Callable[[dict[str, Any]], None]

_ACTIVE: dict[str, "Run"] = {}
_ACTIVE_LOCK = threading.Lock()
_INIT_LOCK = threading.Lock()


def active_runs() -> dict[str, "Run"]:
    """Runs of this process that have started and not yet ended, by id."""
    with _ACTIVE_LOCK:
        return dict(_ACTIVE)


def _versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "lowbit": getattr(core, "__version__", "?"), "platform": platform.platform()}


def _set_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)`` (process-wide) and Numba's thread count for the calling thread."""
    if not n:
        return
    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - numba missing or not initialised: nothing to limit
        log.debug("could not set numba threads", exc_info=True)


def _autocast(device: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``dtype`` on ``device``'s type, or a no-op context."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


class _Stop(Exception):
    pass


class Run:
    """One training run, trained in a worker thread.

    Args:
        config: a :class:`RunConfig`, its dict form, or a path to a TOML file.
        store: a :class:`RunStore`, a store file path, or None (``$LOWBIT_STORE`` / user data dir).
        run_id: train the ``created`` run row of this id (made by the process that queued the run,
            e.g. a page or a sweep client) instead of creating a new row.

    Besides its Python controls, a run obeys the commands other processes write for it into the
    store (``RunStore.send_command``: pause, resume, stop, update), read between steps every
    :attr:`command_interval` seconds and acknowledged at once.

    Raises:
        ValueError: the config is invalid (unknown scheme, bad spec ...), or the dataset/model name is
            unknown.
    """

    #: seconds between store commits while training
    flush_interval: float = 0.25
    #: seconds between reads of the commands other processes sent through the store
    command_interval: float = 0.05
    #: seconds a commit waits for another process's write lock on the store before training goes on
    #: (the rows stay buffered and the commit is retried with backoff; the run's end waits longer)
    store_wait: float = 1.0

    def __init__(self, config: RunConfig | Mapping[str, Any] | str | os.PathLike[str],
                 store: RunStore | str | os.PathLike[str] | None = None, run_id: str | None = None) -> None:
        if isinstance(config, RunConfig):
            cfg = config
        elif isinstance(config, Mapping):
            cfg = RunConfig.from_dict(config)
        else:
            cfg = RunConfig.from_toml(config)
        from core.data import DATASETS
        from core.models import MODELS

        if cfg.data.name not in DATASETS:
            raise ValueError(f"unknown dataset {cfg.data.name!r}; known: {', '.join(sorted(DATASETS))}")
        if cfg.model.name not in MODELS:
            raise ValueError(f"unknown model {cfg.model.name!r}; known: {', '.join(sorted(MODELS))}")
        self.config: RunConfig = cfg
        self._target: RunConfig = cfg
        self._pending: dict[str, Any] = {}
        self._store_arg = store
        self._store: RunStore | None = store if isinstance(store, RunStore) else None
        self.id: str | None = run_id
        self._adopt = run_id is not None
        self._cmd_seq = 0
        self._cmd_next = 0.0
        self._flush_fields: dict[str, Any] = {}
        self._retry_at = 0.0
        self._retries = 0
        self._blocked_since: float | None = None
        self.status = RunStatus.CREATED.value
        self.error: BaseException | None = None
        self.step = 0
        self.epoch = 0
        self.result: dict[str, Any] = {}
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.data: DataBundle | None = None
        self._subs: list[Callback] = []
        self._lock = threading.RLock()
        self._running = threading.Event()
        self._running.set()
        self._stop_flag = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, Any] = {}
        self._resume: dict[str, Any] | None = None
        self._writer: RunWriter | None = None
        self._ctx = StepContext(seed=cfg.seed)
        self._gen = torch.Generator()
        self._test_acc: float | None = None
        self._best_acc: float | None = None
        self._t_start = 0.0
        self._warned: str | None = None  # the last quantization warning recorded

    # ------------------------------------------------------------------ public API
    @property
    def store(self) -> RunStore:
        """The run store (opened on first use)."""
        if self._store is None:
            self._store = RunStore(self._store_arg)  # type: ignore[arg-type]
        return self._store

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.data.train) if self.data is not None else 0
        return max(1, math.ceil(n / self.config.batch_size)) if n else 1

    @property
    def total_steps(self) -> int:
        """Steps the run will take (changes when ``epochs``/``max_steps`` are updated live)."""
        t = self.config.epochs * self.steps_per_epoch
        return min(t, self.config.max_steps) if self.config.max_steps else t

    @property
    def progress(self) -> float:
        """Fraction of steps done, in [0, 1]."""
        return min(1.0, self.step / max(1, self.total_steps)) if self.data is not None else 0.0

    def prepare(self) -> "Run":
        """Load the data and build the model now, in the calling thread (raises dataset errors here)."""
        with self._lock:
            if self.model is not None:
                return self
            cfg = self.config
            if cfg.device.startswith("cuda") and not torch.cuda.is_available():
                raise ValueError(f"device {cfg.device!r}: CUDA is not available on this machine (use device=cpu)")
            _set_threads(cfg.threads)
            data = load_dataset(cfg.data)
            # the split's size is known only now (a subset is also checked on the config itself)
            cfg.check_training_set_size(len(data.train), f"the training split of {cfg.data.name}",
                                        "use a larger dataset")
            self.data = data
            with _INIT_LOCK, torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                model = build_model(cfg.model, self.data.input_shape, self.data.num_classes)
            model = cfg.scheme.prepare(model, cfg.seed).to(cfg.device)
            from .cost import attach_counter  # effective BitOPs of every run (role "cost")

            attach_counter(model)
            self.model = model
            self.optimizer = cfg.scheme.make_optimizer(model.parameters(), cfg.optim)
            for g in self.optimizer.param_groups:
                g["base_lr"] = cfg.optim.lr
            self._gen.manual_seed(cfg.seed)
            if self._resume is not None:
                ck = self._resume
                model.load_state_dict(ck["model"])
                self.optimizer.load_state_dict(ck["optimizer"])
                self._gen.set_state(ck["rng"])
                restore_generators(model, ck["generators"])
                self.step = int(ck["step"])
                self.epoch = int(ck["next_epoch"])
                self._ctx.state.update(ck.get("scheme_state") or {})
            return self

    def start(self) -> "Run":
        """Start training in a worker thread and return at once.

        Raises:
            RuntimeError: the run was already started.
            StoreWriteError: the store was opened read-only (a read-only folder or file), or its run row
                cannot be written (a full disk); nothing is written.
        """
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"run {self.id} was already started")
            self.store.require_writable()
            cfg = self.config
            try:
                if self._adopt:
                    assert self.id is not None
                    self.store.adopt_run(self.id, versions=_versions())
                else:
                    self.id = self.store.create_run(
                        cfg.to_dict(), name=cfg.name, dataset=cfg.data.name, model=cfg.model.name,
                        scheme=cfg.scheme.name, epochs=cfg.epochs, versions=_versions())
            except sqlite3.OperationalError as exc:
                why = sqlite_reason(exc)
                if why is None:
                    raise
                raise write_error(self.store.path, why) from None
            self._ctx.run_id = self.id
            self.status = RunStatus.RUNNING.value
            with _ACTIVE_LOCK:
                _ACTIVE[self.id] = self
            self._thread = threading.Thread(target=self._worker, name=f"lowbit-run-{self.id}", daemon=True)
            self._thread.start()
        return self

    def pause(self) -> None:
        """Pause before the next step."""
        self._running.clear()

    def resume(self) -> None:
        """Continue a paused run."""
        self._running.set()

    def stop(self) -> None:
        """End the run before the next step (status ``stopped``)."""
        self._stop_flag.set()
        self._running.set()

    def update(self, changes: Mapping[str, Any] | None = None, **kw: Any) -> RunConfig:
        """Change the config while the run goes; applied before the next step, logged as event ``update``.

        Args:
            changes: dotted keys (``"optim.lr"``, ``"scheme.mx"``, ``"telemetry.every"``, ``"epochs"``,
                ``"scheme"``); ``kw`` adds more (``lr=``, or a field of the current scheme).

        Returns:
            the config that will be in effect.

        Raises:
            ValueError: unknown key, a key that cannot change live, or an invalid value (nothing changes).
        """
        merged = dict(changes or {}, **kw)
        with self._lock:
            if is_final(self.status):
                raise RuntimeError(f"run {self.id} has ended ({self.status}); cannot update it")
            merged = self._target.normalise_keys(merged)
            new = self._target.with_changes(merged, live=True)
            if self._thread is None:  # not started: just a new config
                self.config = self._target = new
                return new
            self._target = new
            self._pending.update(merged)
            return new

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(payload)`` from the worker thread for every step, telemetry snapshot, epoch,
        event and status change (payloads: ``docs/train-api.md``). Returns an unsubscribe function."""
        with self._lock:
            self._subs.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subs:
                    self._subs.remove(callback)

        return unsubscribe

    def wait(self, timeout: float | None = None) -> str:
        """Block until the run ends (or ``timeout`` seconds); return the status."""
        if self._thread is not None:
            self._done.wait(timeout)
        return self.status

    def snapshot(self) -> dict[str, Any]:
        """Current status, counters and the latest step payload."""
        return {"run_id": self.id, "status": self.status, "step": self.step, "epoch": self.epoch,
                "total_steps": self.total_steps, "progress": self.progress, "last": dict(self._last),
                "test_acc": self._test_acc, "best_test_acc": self._best_acc}

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], store: RunStore | str | None = None,
                        **changes: Any) -> "Run":
        """A new run continuing from a checkpoint (same config unless ``changes`` say otherwise; a
        checkpoint taken mid-epoch resumes at the start of that epoch)."""
        ck = load_checkpoint(path)
        cfg = RunConfig.from_dict(ck["config"])
        if changes:
            cfg = cfg.with_changes(changes)
        run = cls(cfg, store)
        run._resume = ck
        return run

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, status={self.status!r}, step={self.step}, scheme={self.config.scheme.name!r})"

    # ------------------------------------------------------------------ notifications
    def _emit(self, payload: dict[str, Any]) -> None:
        payload.setdefault("run_id", self.id)
        payload.setdefault("step", self.step)
        payload.setdefault("epoch", self.epoch)
        with self._lock:
            subs = list(self._subs)
        for cb in subs:
            try:
                cb(payload)
            except Exception:  # noqa: BLE001 - a broken consumer never stops training
                log.exception("run %s: subscriber %r failed", self.id, cb)

    def _event(self, kind: str, payload: dict[str, Any] | None = None, flush: bool = True) -> None:
        payload = payload or {}
        if self._writer is not None:
            self._writer.event(self.step, kind, payload)
            if flush:
                self._flush()
        self._emit({"type": "event", "kind": kind, "payload": payload})

    def _set_status(self, status: str) -> None:
        self.status = status
        if self._writer is not None:
            self._flush()
        self._emit({"type": "status", "status": status})

    def _flush(self, final: bool = False, **fields: Any) -> None:
        """Commit the buffered rows. When another process holds the store's write lock longer than
        :attr:`store_wait`, training goes on with the rows buffered, retried with backoff (the run's
        last commit waits up to 30 s); the blocked time is logged as event ``store_blocked``."""
        w = self._writer
        if w is None:
            return
        self._flush_fields.update(fields)
        now = time.monotonic()
        if not final and now < self._retry_at:
            return
        fields = dict(self._flush_fields)
        fields.setdefault("status", self.status)
        fields.setdefault("step", self.step)
        fields.setdefault("epoch", self.epoch)
        if self.data is not None:
            fields.setdefault("total_steps", self.total_steps)
        try:
            w.flush(wait=None if final else self.store_wait, **fields)
        except sqlite3.OperationalError as exc:
            if final or not any(k in str(exc) for k in ("locked", "busy")):
                raise
            if self._blocked_since is None:
                self._blocked_since = time.time()
            self._retries += 1
            self._retry_at = now + min(30.0, 0.25 * 2 ** min(self._retries, 7))
            log.warning("run %s: the run store is locked by another process (%s); %d rows buffered, retry %d",
                        self.id, exc, w.pending(), self._retries)
            return
        self._flush_fields = {}
        if self._blocked_since is not None:
            blocked = time.time() - self._blocked_since
            log.warning("run %s: the run store is writable again after %.1f s; buffered rows written", self.id,
                        blocked)
            w.event(self.step, "store_blocked", {"seconds": blocked, "retries": self._retries})
            self._blocked_since, self._retries, self._retry_at = None, 0, 0.0
            w.flush(wait=None if final else self.store_wait, **fields)  # the event too (this may be the last commit)

    def _read_commands(self, force: bool = False) -> None:
        """Obey the commands other processes sent through the store (acknowledged at once)."""
        now = time.monotonic()
        if self.id is None or (now < self._cmd_next and not force):
            return
        self._cmd_next = now + self.command_interval
        try:
            commands = self.store.new_commands(self.id, self._cmd_seq)
        except sqlite3.Error:
            log.warning("run %s: cannot read its commands", self.id, exc_info=True)
            return
        for cmd in commands:
            self._cmd_seq = cmd["seq"]
            kind = cmd["kind"]
            try:
                if kind == CommandKind.PAUSE:
                    self.pause()
                    result = "pausing"
                elif kind == CommandKind.RESUME:
                    self.resume()
                    result = "resuming"
                elif kind == CommandKind.STOP:
                    self.stop()
                    result = "stopping"
                elif kind == CommandKind.UPDATE:
                    self.update(cmd["payload"].get("changes") or {})
                    result = f"applied at step {self.step}"
                else:
                    result = f"rejected: unknown command {kind!r}"
            except (ValueError, RuntimeError, TypeError) as exc:
                result = f"rejected: {exc}"
            try:
                self.store.ack_command(cmd["seq"], result, self.step)
            except sqlite3.Error:
                log.warning("run %s: cannot acknowledge command %s", self.id, cmd["seq"], exc_info=True)

    # ------------------------------------------------------------------ worker
    def _worker(self) -> None:
        self._t_start = time.perf_counter()
        _set_threads(self.config.threads)
        self._writer = self.store.writer(self.id)  # type: ignore[arg-type]
        final = RunStatus.DONE.value
        try:
            self.prepare()
            self._write_layers()
            self._event("start", {"config": self.config.to_dict(), "total_steps": self.total_steps,
                                  "resumed_from_step": self.step if self._resume else None})
            self._check_quantized()
            self._emit({"type": "status", "status": RunStatus.RUNNING.value})
            final = self._train()
        except Exception as exc:  # noqa: BLE001 - recorded as the run's error
            log.exception("run %s failed", self.id)
            self.error = exc
            final = RunStatus.ERROR.value
            try:
                self._event("error", {"message": f"{type(exc).__name__}: {exc}",
                                      "traceback": traceback.format_exc()}, flush=False)
            except Exception:  # noqa: BLE001
                log.exception("run %s: could not record the error", self.id)
        finally:
            self._finish(final)

    def _finish(self, final: str) -> None:
        self.status = final
        seconds = time.perf_counter() - self._t_start
        self.result = {"run_id": self.id, "status": final, "steps": self.step, "epochs": self.epoch,
                       "test_acc": self._test_acc, "best_test_acc": self._best_acc, "seconds": seconds}
        try:
            if self._writer is not None:
                # diverged/error were logged with their details already
                if final in (RunStatus.DONE, RunStatus.STOPPED):
                    self._writer.event(self.step, final, {k: v for k, v in self.result.items() if k != "run_id"})
                self._flush(final=True, ended=time.time(), final_test_acc=self._test_acc,
                            best_test_acc=self._best_acc,
                            error=(f"{type(self.error).__name__}: {self.error}" if self.error else None))
                self._writer.close()
        except Exception:  # noqa: BLE001
            log.exception("run %s: could not write its final state", self.id)
        with _ACTIVE_LOCK:
            _ACTIVE.pop(self.id or "", None)
        if final in (RunStatus.DONE, RunStatus.STOPPED):
            self._emit({"type": "event", "kind": final, "payload": dict(self.result)})
        self._emit({"type": "status", "status": final})
        self._done.set()

    def quantization_warning(self) -> str | None:
        """Why this run trains in float although its scheme quantizes, or None.

        A scheme with a quantized config (``quant()``) may still leave every layer of the model float:
        MLS keeps the first and the last layer float unless ``first_last`` (MLS paper, App. B;
        docs/papers.md#mls-first-last), and those are all the layers of a one-hidden-layer MLP. Needs
        the model (:meth:`prepare`).
        """
        model, scheme = self.model, self.config.scheme
        q = scheme.quant()
        if model is None or q is None or q.is_float:
            return None
        layers = [layer for _, layer in quantized_layers(model)]
        if not layers or any(layer.quant is not None and not layer.quant.is_float for layer in layers):
            return None
        why = ""
        if getattr(scheme, "first_last", True) is False:
            why = (f": first_last=false keeps the first and last layer float and this {self.config.model.name} "
                   f"has only {len(layers)} (set first_last=true, --first-last, or use a deeper model)")
        return f"scheme {scheme.name} quantizes no layer{why}; the run trains in float"

    def _check_quantized(self) -> None:
        """Record :meth:`quantization_warning` as a ``warning`` event when it appears or changes."""
        msg = self.quantization_warning()
        if msg is not None and msg != self._warned:
            log.info("run %s: %s", self.id, msg)
            self._event("warning", {"message": msg}, flush=False)
        self._warned = msg

    def _write_layers(self) -> None:
        assert self._writer is not None and self.model is not None
        for name, layer in quantized_layers(self.model):
            kind = type(layer).__mro__[1].__name__
            self._writer.layer(layer.layer_index, name, kind, list(layer.weight.shape),
                               sum(p.numel() for p in layer.parameters(recurse=False)))

    # ------------------------------------------------------------------ the loop
    def _train(self) -> str:
        assert self.model is not None and self.optimizer is not None and self.data is not None
        model, data = self.model, self.data
        ctx = self._ctx
        ctx.model, ctx.optimizer = model, self.optimizer
        telemetry = Telemetry(self.config.telemetry, self.config.seed)
        n = len(data.train)
        try:
            while self.epoch < self.config.epochs:
                perm = torch.randperm(n, generator=self._gen)
                t_epoch = time.perf_counter()
                loss_sum, correct, count = 0.0, 0, 0
                spe = self.steps_per_epoch
                for b in range(spe):
                    telemetry = self._between_steps(telemetry)
                    if self.config.max_steps is not None and self.step >= self.config.max_steps:
                        break
                    idx = perm[b * self.config.batch_size:(b + 1) * self.config.batch_size]
                    x, y = data.train.batch(idx, self._gen)
                    x, y = x.to(self.config.device), y.to(self.config.device)
                    out = self._one_step(x, y, telemetry)
                    if out is None:
                        return RunStatus.DIVERGED.value
                    loss_sum += out.loss * out.count
                    correct += out.correct
                    count += out.count
                    self.step += 1
                if count:
                    self._end_epoch(loss_sum / count, correct / count, time.perf_counter() - t_epoch)
                self.epoch += 1
                if self.config.max_steps is not None and self.step >= self.config.max_steps:
                    break
        except _Stop:
            if self._test_acc is None or self._last_eval_step != self.step:
                acc, loss = self.evaluate()
                self._record_eval(acc, loss, None, None, 0.0)
            self._checkpoint(next_epoch=self.epoch)
            return RunStatus.STOPPED.value
        self._checkpoint(next_epoch=self.epoch, final=True)
        return RunStatus.DONE.value

    _last_eval_step = -1

    def _between_steps(self, telemetry: Telemetry) -> Telemetry:
        """Honour stop/pause, then apply pending updates and the scheme's schedule."""
        self._read_commands()
        if self._stop_flag.is_set():
            raise _Stop
        if not self._running.is_set():
            self._set_status(RunStatus.PAUSED.value)
            self._event("pause")
            while not self._running.wait(self.command_interval):
                self._read_commands(force=True)
            if self._stop_flag.is_set():
                raise _Stop
            self.status = RunStatus.RUNNING.value
            self._event("resume")
            self._set_status(RunStatus.RUNNING.value)
        with self._lock:
            pending, self._pending = self._pending, {}
            target = self._target
        if pending:
            telemetry = self._apply(target, pending, telemetry)
        ctx = self._ctx
        ctx.step, ctx.epoch = self.step, self.epoch
        ctx.steps_per_epoch, ctx.total_steps = self.steps_per_epoch, self.total_steps
        old_scheme = self.config.scheme
        new_scheme = old_scheme.schedule(ctx)
        if new_scheme is not None and new_scheme != old_scheme:
            with self._lock:  # keep the target in step unless the user changed the scheme meanwhile
                if self._target.scheme == old_scheme:
                    self._target = self._target.with_changes({"scheme": new_scheme})
            self._apply_config(self.config.with_changes({"scheme": new_scheme}))
            self._event("schedule", {"scheme": new_scheme.to_dict(), "summary": new_scheme.summary()}, flush=False)
        return telemetry

    def _apply(self, target: RunConfig, changes: dict[str, Any], telemetry: Telemetry) -> Telemetry:
        old = self.config
        self._apply_config(target)
        if target.telemetry != old.telemetry:
            telemetry = Telemetry(target.telemetry, target.seed)
        shown = {k: (v.to_dict() if isinstance(v, Scheme) else v) for k, v in changes.items()}
        self._event("update", {"changes": shown, "step": self.step, "scheme": target.scheme.summary()})
        return telemetry

    def _apply_config(self, cfg: RunConfig) -> None:
        assert self.model is not None and self.optimizer is not None
        old = self.config
        self.config = cfg
        if cfg.scheme != old.scheme:
            assign(self.model, cfg.scheme)
            self._check_quantized()
        if cfg.optim != old.optim:
            for g in self.optimizer.param_groups:
                g["base_lr"] = cfg.optim.lr
                if "momentum" in g:
                    g["momentum"] = cfg.optim.momentum
                g["weight_decay"] = cfg.optim.weight_decay

    def _one_step(self, x: torch.Tensor, y: torch.Tensor, telemetry: Telemetry) -> StepOutput | None:
        assert self.model is not None and self.optimizer is not None
        cfg, model, opt, ctx = self.config, self.model, self.optimizer, self._ctx
        lr = cfg.optim.lr * lr_factor(self.step, self.total_steps, self.steps_per_epoch, cfg.optim)
        for g in opt.param_groups:
            g["lr"] = g.get("base_lr", cfg.optim.lr) * (lr / cfg.optim.lr)
        ctx.lr = lr
        layers = list(quantized_layers(model))
        for _, layer in layers:
            layer.step = self.step
        tel = telemetry.due(self.step)
        if tel:
            telemetry.arm(model)
        need_before = [(n, q) for n, q in layers if q.quant is not None and q.quant.update is not None]
        before = telemetry.snapshot_weights(model) if (tel and cfg.telemetry.stagnation) else None
        upd_before = {n: q.weight.detach().clone() for n, q in need_before}

        t0 = time.perf_counter()
        out = cfg.scheme.train_step(ctx, x, y)
        if out is None:
            out = self._standard_step(x, y)
        if out is None:
            telemetry.disarm(model)
            return None
        for name, layer in need_before:
            w0 = upd_before[name]
            with torch.no_grad():
                layer.weight.copy_(w0 + layer._q("update", layer.weight - w0))
        step_time = time.perf_counter() - t0
        ctx.losses.append(out.loss)
        w = self._writer
        assert w is not None
        acc = out.correct / max(1, out.count)
        s, e = self.step, self.epoch
        for k, v in (("loss", out.loss), ("train_acc", acc), ("lr", lr), ("step_time", step_time)):
            w.metric(s, e, "", "", "", "", k, v)
        payload = {"type": "step", "step": s, "epoch": e, "loss": out.loss, "train_acc": acc, "lr": lr,
                   "step_time": step_time}
        self._last = payload
        self._emit(dict(payload))
        if tel:
            t1 = time.perf_counter()
            rows, hists, samples = telemetry.collect(model, s, before)
            rows += cfg.scheme.extra_metrics(model, ctx)
            for r in rows:
                w.metric(s, e, r.layer, r.tensor, r.fmt, r.role, r.name, r.value)
            for h in hists:
                w.histogram(s, e, h.layer, h.tensor, h.kind, h.lo, h.hi, h.bins, h.zeros, h.nonfinite, h.counts)
            for layer_name, t, sample, shape in samples:
                w.sample(s, layer_name, t, int(np.prod(shape)), shape, sample.numpy())
            ttime = time.perf_counter() - t1
            w.metric(s, e, "", "", "", "", "telemetry_time", ttime)
            self._emit({"type": "telemetry", "step": s, "epoch": e, "rows": [r.to_dict() for r in rows],
                        "histograms": [h.to_dict() for h in hists], "telemetry_time": ttime})
        if time.monotonic() - w.last_flush > self.flush_interval:
            self._flush()
        return out

    def _standard_step(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput | None:
        """Forward, loss, divergence check, backward, optimizer step; None when the run diverged."""
        assert self.model is not None and self.optimizer is not None
        cfg, model, opt = self.config, self.model, self.optimizer
        model.train()
        opt.zero_grad(set_to_none=True)
        dtype = cfg.scheme.autocast_dtype()
        with _autocast(cfg.device, dtype):
            logits = model(x)
        loss = cfg.scheme.loss(logits, y, model, self._ctx)
        lv = float(loss.detach())
        if not math.isfinite(lv) or lv > cfg.diverge_loss:
            self._diverged(lv)
            return None
        loss.backward()
        if cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        correct = int((logits.detach().argmax(1) == y).sum())
        return StepOutput(lv, correct, int(y.shape[0]))

    def _diverged(self, loss: float) -> None:
        log.warning("run %s diverged at step %d (loss %s)", self.id, self.step, loss)
        if self._writer is not None:
            self._writer.metric(self.step, self.epoch, "", "", "", "", "loss", loss)
        self._event("diverged", {"loss": loss if math.isfinite(loss) else str(loss),
                                 "threshold": self.config.diverge_loss})

    # ------------------------------------------------------------------ epochs
    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Test accuracy and mean loss of the current model (quantized forward as in training)."""
        assert self.model is not None and self.data is not None
        cfg, model, test = self.config, self.model, self.data.test
        model.eval()
        for _, layer in quantized_layers(model):
            layer.step = self.step
        dtype = cfg.scheme.autocast_dtype()
        correct, loss_sum, n = 0, 0.0, len(test)
        for i in range(0, n, cfg.eval_batch_size):
            idx = torch.arange(i, min(n, i + cfg.eval_batch_size))
            x, y = test.batch(idx)
            x, y = x.to(cfg.device), y.to(cfg.device)
            with _autocast(cfg.device, dtype):
                logits = model(x).float()
            loss_sum += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
        model.train()
        self._last_eval_step = self.step
        return correct / max(1, n), loss_sum / max(1, n)

    def _record_eval(self, acc: float, loss: float, train_loss: float | None, train_acc: float | None,
                     seconds: float) -> None:
        w = self._writer
        assert w is not None
        s, e = max(0, self.step - 1), self.epoch
        self._test_acc = acc
        self._best_acc = acc if self._best_acc is None else max(self._best_acc, acc)
        self._ctx.test_acc.append(acc)
        vals: dict[str, float | None] = {"test_acc": acc, "test_loss": loss}
        if train_loss is not None:
            vals.update(epoch_train_loss=train_loss, epoch_train_acc=train_acc, epoch_time=seconds)
        for k, v in vals.items():
            w.metric(s, e, "", "", "", "", k, v)
        self._emit({"type": "epoch", "step": s, "epoch": e, "test_acc": acc, "test_loss": loss,
                    "train_loss": train_loss, "train_acc": train_acc, "epoch_time": seconds})
        self._flush(final_test_acc=acc, best_test_acc=self._best_acc)

    def _end_epoch(self, train_loss: float, train_acc: float, seconds: float) -> None:
        acc, loss = self.evaluate()
        self._record_eval(acc, loss, train_loss, train_acc, seconds)
        every = self.config.checkpoint_every
        if every and (self.epoch + 1) % every == 0 and self.epoch + 1 < self.config.epochs:
            self._checkpoint(next_epoch=self.epoch + 1)

    def _checkpoint(self, next_epoch: int, final: bool = False) -> Path | None:
        if not self.config.checkpoint or self.model is None or self.optimizer is None or self.id is None:
            return None
        path = self.store.checkpoint_dir(self.id) / f"step-{self.step}.pt"
        save_checkpoint(path, model=self.model, optimizer=self.optimizer, config=self.config.to_dict(),
                        step=self.step, epoch=self.epoch, next_epoch=next_epoch, rng=self._gen.get_state(),
                        scheme_state=self._ctx.state)
        assert self._writer is not None
        self._writer.checkpoint(self.step, self.epoch, path)
        self._event("checkpoint", {"path": str(path), "final": final})
        return path
