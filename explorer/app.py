"""The Explorer application: the four pages as tabs, one set of state per browser session.

``create_app()`` builds fresh page objects each time it is called; ``panel serve`` runs
``apps/explorer.py`` once per session, so two browser sessions never share widget state. A page is
built when its tab is first opened, so a session pays only for the pages it shows.
The open tab follows the URL query (``?page=lab|live|compare|sweeps``). Clicking a cell of a
Sweeps heat map opens its runs in Compare. A store that cannot be used (corrupt, not a run store,
a newer schema) gives a page with the reason in an alert instead of the tabs (:func:`store_error_page`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from typing import Any

import panel as pn

__all__ = ["create_app", "store_error_page", "PAGES", "RAW_CSS"]

log = logging.getLogger(__name__)

#: URL query value -> tab title
PAGES: dict[str, str] = {"lab": "Format Lab", "live": "Live Training", "compare": "Compare", "sweeps": "Sweeps"}

RAW_CSS = """
.bk-tab { font-size: 15px; }
"""


def create_app(store: Any = None, page: str | None = None) -> pn.viewable.Viewable:
    """Build the Explorer for one session.

    Only the open tab's page is built at once; the others are built the first time their tab is
    opened (a session that opens on Live Training never pays for the Format Lab's first analysis, and
    the other way round). Compare is built with Sweeps, whose cell clicks open runs in it.

    Args:
        store: a ``core.store.RunStore`` (or path); None opens the default store lazily.
        page: the tab to open (``lab``, ``live``, ``compare``, ``sweeps``); None reads ``?page=`` from the URL.

    Returns:
        A Panel layout (``pn.Column`` with a header and the tabs, or with the alert of
        :func:`store_error_page` when the store cannot be opened).
    """
    store, problem = _open_store(store)
    if problem is not None:
        return store_error_page(problem)
    if page is None and pn.state.location is not None:
        page = (pn.state.session_args.get("page", [b""])[0] or b"").decode() or None
    try:  # the training engine starts in the background whichever page opens: a first Start need not wait
        from . import registry

        registry.warm_up()
    except ImportError:  # the training engine is not installed (Live Training says so)
        pass
    _freeze_startup_objects()
    return _Pages(store).layout(page if page in PAGES else "lab")


_FROZEN: list[bool] = []


def _freeze_startup_objects() -> None:
    """In a server, once: move the objects of the imported modules (~400K: torch, Bokeh, HoloViews ...) out of the
    garbage collector's sight (:func:`gc.freeze`), so a full collection, which Panel runs after every closed session
    and Python whenever long-lived objects grow by a quarter, scans only the sessions' objects (0.4 s -> a few ms
    a collection, with the GIL held: the other sessions wait)."""
    import gc

    if _FROZEN or pn.state.curdoc is None or pn.state.curdoc.session_context is None:
        return
    _FROZEN.append(True)
    gc.collect()
    gc.freeze()


class _Pages:
    """The four pages of one session, each built on first use into its tab's placeholder."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.keys = list(PAGES)
        self.slots = {k: pn.Column(sizing_mode="stretch_width", margin=0) for k in self.keys}
        self.built: dict[str, Any] = {}
        self.compare_state: Any = None
        self.sweeps_view: Any = None
        self.tabs = pn.Tabs(*[(PAGES[k], self.slots[k]) for k in self.keys], dynamic=True,
                            sizing_mode="stretch_width", css_classes=["explorer-tabs"])

    def layout(self, first: str) -> pn.viewable.Viewable:
        self.tabs.active = self.keys.index(first)
        self.page(first)
        self.tabs.param.watch(self._on_tab, "active")
        return pn.Column(_header(), self.tabs, sizing_mode="stretch_width")

    def _on_tab(self, event: Any) -> None:
        key = self.keys[event.new]
        fresh = key not in self.built
        self.page(key)
        if self.sweeps_view is not None:  # the Sweeps page re-reads the store every second only while open
            self.sweeps_view.set_polling(key == "sweeps")
        if key == "compare" and self.compare_state is not None and not fresh:
            # runs finish while the user is elsewhere: re-read the store whenever Compare is opened
            self.compare_state.refresh_runs()

    def page(self, key: str) -> Any:
        """The page of tab ``key``, built (and put into its tab) on the first call."""
        if key not in self.built:
            view = self.built[key] = getattr(self, f"_build_{key}")()
            self.slots[key].objects = [view]
        return self.built[key]

    def _build_lab(self) -> Any:
        from .lab import FormatLab
        from .lab_state import FormatLabState

        return FormatLab(FormatLabState(store=self.store))

    def _build_live(self) -> Any:
        try:
            from .live import LiveTraining
            from .live_state import LiveTrainingState
        except ImportError:  # the training engine is not installed
            return pn.pane.Markdown("The training engine (core.train) is not available.")
        return LiveTraining(LiveTrainingState(store=self.store))

    def _build_compare(self) -> Any:
        try:
            from .compare import Compare
            from .compare_state import CompareState
        except ImportError:
            return pn.pane.Markdown("The run store (core.store) is not available.")
        self.compare_state = CompareState(store=self.store)
        return Compare(self.compare_state)

    def _build_sweeps(self) -> Any:
        try:
            from .sweeps import Sweeps
            from .sweeps_state import SweepsState
        except ImportError:
            return pn.pane.Markdown("The sweep engine (core.sweep) is not available.")
        # a cell click opens its runs in Compare: that page is built now, ready before its tab is shown (built
        # within the click's own callback, the selection made next would not reach the browser)
        self.page("compare")
        state = SweepsState(store=self.store)
        state.open_runs = self._open_in_compare
        self.sweeps_view = Sweeps(state)
        self.sweeps_view.set_polling(self.tabs.active == self.keys.index("sweeps"))
        return self.sweeps_view

    def _open_in_compare(self, run_ids: list[str]) -> None:
        # switch first: the Compare page renders attached to the document, then shows the runs
        # (an update of a page that is not on screen yet would resolve its stylesheets to the CDN)
        index = self.keys.index("compare")
        if self.tabs.active != index:
            self.tabs.active = index  # its watcher re-reads the run list
        elif self.compare_state is not None:
            self.compare_state.refresh_runs()
        if self.compare_state is None:
            return
        known = set(self.compare_state.param.selected.objects)
        self.compare_state.selected = [r for r in run_ids if r in known]


def _header() -> pn.viewable.Viewable:
    return pn.pane.HTML("<h2 style='margin:4px 8px'>Lowbit Explorer</h2>", sizing_mode="stretch_width")


def _open_store(store: Any) -> tuple[Any, str | None]:
    """``(RunStore, None)``, or ``(None, reason)`` when the store cannot be used (one per session,
    shared by the pages)."""
    try:
        from core.store import RunStore, StoreError
    except ImportError:  # the pages say so themselves
        return store, None
    if isinstance(store, RunStore):
        return store, None
    try:
        return _shared_store(store), None
    except (StoreError, OSError) as exc:
        log.error("run store unusable: %s", exc)
        return None, " ".join(str(exc).split())


#: store path -> (the file's device and inode when opened, the store): the sessions of one process share it
_SHARED_STORES: dict[Any, tuple[tuple[int, int], Any]] = {}
_SHARED_LOCK = threading.Lock()


def _shared_store(store: Any) -> Any:
    """The process's ``RunStore`` for the path ``store`` (None: the default), opened (and checked: quick_check,
    schema) by the first session; a later session reuses it while the path names the same file, and only looks
    for runs whose process is gone. A training run grows the file, so a check keyed on its size would read
    the whole store again for every new page; a file put in its place (a new inode) is opened and checked."""
    from core.store import RunStore, resolve_store_path

    path = resolve_store_path(store)
    with _SHARED_LOCK:
        held = _SHARED_STORES.get(path)
        if held is not None and held[0] == _file_identity(path):
            shared = held[1]
            if not shared.readonly:
                try:
                    shared.mark_interrupted()
                except sqlite3.Error as exc:  # a busy store: the next page looks again
                    log.warning("looking for interrupted runs in %s failed: %s", path, exc)
            return shared
        opened = RunStore(path)
        ident = _file_identity(path)
        if ident is not None:
            _SHARED_STORES[path] = (ident, opened)
        return opened


def _file_identity(path: Any) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def store_error_page(reason: str) -> pn.viewable.Viewable:
    """The page shown instead of the tabs when the run store cannot be used: the reason in a danger alert."""
    text = reason.replace("`", "'")
    alert = pn.pane.Alert(f"**The run store cannot be used.**\n\n`{text}`\n\nOr start the Explorer with another "
                          f"store: `--store FILE` or `LOWBIT_STORE`.",
                          alert_type="danger", sizing_mode="stretch_width", css_classes=["store-error"])
    return pn.Column(_header(), alert, sizing_mode="stretch_width")
