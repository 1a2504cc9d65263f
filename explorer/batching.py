"""One Bokeh document update for a batch of plot changes.

Every HoloViews plot update runs inside Bokeh's ``doc.models.freeze()``, and Bokeh recomputes the
document's whole model graph when the outermost freeze ends, whether or not anything in the block
changed the graph: on the Live Training page (~640 models) 0.16 s on a quiet 2-core machine and
0.5-1.4 s with every core busy, paid per plot redrawn while the server's event loop (and so every
click) waits. A plot redraw that only replaces data and ranges changes no model reference.

:func:`batched` holds the document's events (one message to the browser) and its model graph for a
batch of redraws, notes whether anything in the batch changed the graph (Bokeh reports every such
change through ``doc.models.invalidate()``, which a freeze defers) and recomputes it at the end only
then. Outside a server session (a notebook, a test calling the state directly) it does nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import panel as pn

__all__ = ["batched"]

_MARK = "_lowbit_batch_dirty"  # set on the document's model manager while a batch is open


@contextlib.contextmanager
def batched(doc: Any = None) -> Iterator[None]:
    """Hold ``doc``'s (default: the current session's) events and model-graph recomputation until
    the block ends, recomputing then only when the block changed the graph; nests."""
    doc = doc if doc is not None else pn.state.curdoc
    if doc is None or getattr(doc, "session_context", None) is None:
        yield
        return
    models = getattr(doc, "models", None)
    if models is None or not hasattr(models, "_freeze_count") or hasattr(models, _MARK):
        # an older Bokeh, or a batch already open (the outer one recomputes): events held only
        with pn.io.hold(doc):
            yield
        return
    setattr(models, _MARK, False)

    def invalidate() -> None:  # the graph changed inside the batch: recompute at its end
        setattr(models, _MARK, True)

    models.invalidate = invalidate  # shadows the method while the batch is open
    models._freeze_count += 1  # the freezes nested inside (HoloViews' per-plot ones) end without recomputing
    try:
        with pn.io.hold(doc):
            yield
    finally:
        models._freeze_count -= 1
        dirty = getattr(models, _MARK)
        del models.invalidate
        delattr(models, _MARK)
        if dirty and models._freeze_count == 0:
            models.recompute()
