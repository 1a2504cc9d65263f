"""The Explorer application: the four pages as tabs, one set of state per browser session.

``create_app()`` builds fresh page objects each time it is called; ``panel serve`` runs
``apps/explorer.py`` once per session, so two browser sessions never share widget state.
The open tab follows the URL query (``?page=lab|live|compare|sweeps``). Clicking a cell of a
Sweeps heat map opens its runs in Compare. A store that cannot be used (corrupt, not a run store,
a newer schema) gives a page with the reason in an alert instead of the tabs (:func:`store_error_page`).
"""

from __future__ import annotations

import logging
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
    from .lab import FormatLab
    from .lab_state import FormatLabState

    keys = list(PAGES)
    lab = FormatLab(FormatLabState(store=store))
    tabs_items: list[tuple[str, Any]] = [(PAGES["lab"], lab)]
    try:
        from .live import LiveTraining
        from .live_state import LiveTrainingState

        tabs_items.append((PAGES["live"], LiveTraining(LiveTrainingState(store=store))))
    except ImportError:  # the training engine is not installed
        tabs_items.append((PAGES["live"], pn.pane.Markdown("The training engine (core.train) is not available.")))
    compare_state = None
    try:
        from .compare import Compare
        from .compare_state import CompareState

        compare_state = CompareState(store=store)
        tabs_items.append((PAGES["compare"], Compare(compare_state)))
    except ImportError:
        tabs_items.append((PAGES["compare"], pn.pane.Markdown("The run store (core.store) is not available.")))
    sweeps_state = None
    try:
        from .sweeps import Sweeps
        from .sweeps_state import SweepsState

        sweeps_state = SweepsState(store=compare_state.store if compare_state is not None else store)
        sweeps_view = Sweeps(sweeps_state)
        tabs_items.append((PAGES["sweeps"], sweeps_view))
    except ImportError:
        tabs_items.append((PAGES["sweeps"], pn.pane.Markdown("The sweep engine (core.sweep) is not available.")))
    tabs = pn.Tabs(*tabs_items, dynamic=True, sizing_mode="stretch_width", css_classes=["explorer-tabs"])
    if sweeps_state is not None and compare_state is not None:
        def open_in_compare(run_ids: list[str]) -> None:
            # switch first: the Compare page renders attached to the document, then shows the runs
            # (an update of a page that is not on screen yet would resolve its stylesheets to the CDN)
            if tabs.active != keys.index("compare"):
                tabs.active = keys.index("compare")  # its watcher re-reads the run list
            else:
                compare_state.refresh_runs()
            known = set(compare_state.param.selected.objects)
            compare_state.selected = [r for r in run_ids if r in known]

        sweeps_state.open_runs = open_in_compare
    if sweeps_state is not None:
        # the Sweeps page re-reads the store every second only while it is the open tab
        tabs.param.watch(lambda e: sweeps_view.set_polling(e.new == keys.index("sweeps")), "active")
    if compare_state is not None:
        # runs finish while the user is elsewhere: re-read the store whenever Compare is opened
        tabs.param.watch(lambda e: compare_state.refresh_runs() if e.new == keys.index("compare") else None, "active")
    if page is None and pn.state.location is not None:
        page = (pn.state.session_args.get("page", [b""])[0] or b"").decode() or None
    if page in keys:
        tabs.active = keys.index(page)
    if sweeps_state is not None:
        sweeps_view.set_polling(tabs.active == keys.index("sweeps"))
    return pn.Column(_header(), tabs, sizing_mode="stretch_width")


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
        return RunStore(store), None
    except (StoreError, OSError) as exc:
        log.error("run store unusable: %s", exc)
        return None, " ".join(str(exc).split())


def store_error_page(reason: str) -> pn.viewable.Viewable:
    """The page shown instead of the tabs when the run store cannot be used: the reason in a danger alert."""
    text = reason.replace("`", "'")
    alert = pn.pane.Alert(f"**The run store cannot be used.**\n\n`{text}`\n\nOr start the Explorer with another "
                          f"store: `--store FILE` or `LOWBIT_STORE`.",
                          alert_type="danger", sizing_mode="stretch_width", css_classes=["store-error"])
    return pn.Column(_header(), alert, sizing_mode="stretch_width")
