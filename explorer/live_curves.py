"""The Live Training page's loss and accuracy curves: Bokeh figures that grow by streaming.

The curves get new rows on every poll of the run store. A HoloViews redraw of a plot makes Bokeh
recompute the whole document's model graph (about 650 models on this page: 0.07 s on a quiet
machine, 0.3-1.4 s with every core busy) and holds the server's event loop meanwhile, so a click
waits. Here the rows go out with ``ColumnDataSource.stream`` (a patch event that touches no model
reference: milliseconds, whatever the run's length) and the browser fits the axes itself
(``DataRange1d``). The heat maps and histograms, redrawn every few seconds, stay HoloViews plots
(:mod:`explorer.live`).

:class:`LiveCurves` reads what :class:`explorer.live_state.LiveTrainingState` took from the run's
feed (its ``steps`` and ``epoch_rows`` buffers and its knob-change ``markers``) and streams what the
figures do not have yet; a new run (``curves_generation``) starts them again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure

from .widgets import FIGURE_TOOLS, figure_pane

if TYPE_CHECKING:
    from bokeh.models.sources import DataDict

__all__ = ["LiveCurves"]

_LOSS_COLOR = "#1f77b4"
_TEST_COLOR = "#ff7f0e"
_MARK = dict(line_color="black", line_alpha=0.5, line_width=1)


def _figure(title: str, y_label: str, height: int, min_width: int) -> Any:
    fig = figure(title=title, height=height, min_width=min_width, sizing_mode="stretch_width", tools=FIGURE_TOOLS,
                 toolbar_location="right", x_axis_label="step", y_axis_label=y_label)
    fig.toolbar.logo = None
    return fig


def _columns(df: pd.DataFrame, names: tuple[str, ...]) -> DataDict:
    return {n: df[n].to_numpy(dtype=float) if n in df else np.full(len(df), np.nan) for n in names}


class LiveCurves:
    """The training-loss and accuracy figures of one Live Training page (one per session).

    Args:
        state: the page's :class:`~explorer.live_state.LiveTrainingState`.
        height, min_width: the figures' height and narrowest width in pixels.
    """

    STEP_COLS = ("step", "loss", "train_acc")
    EPOCH_COLS = ("step", "test_acc")

    def __init__(self, state: Any, height: int = 260, min_width: int = 360) -> None:
        self.state = state
        self.steps = ColumnDataSource(data={c: np.array([], dtype=float) for c in self.STEP_COLS})
        self.epochs = ColumnDataSource(data={c: np.array([], dtype=float) for c in self.EPOCH_COLS})
        self.marks = ColumnDataSource(data={"step": np.array([], dtype=float)})
        self._generation: Any = None
        self._taken = {"steps": 0, "epochs": 0}
        self._markers: list[int] = []

        self.loss = _figure("Training loss", "loss", height, min_width)
        self.loss.line("step", "loss", source=self.steps, color=_LOSS_COLOR, line_width=2)
        self.loss.add_tools(HoverTool(tooltips=[("step", "@step"), ("loss", "@loss{0.0000}")], mode="vline"))
        self.acc = _figure("Accuracy (train per step, test per epoch)", "accuracy", height, min_width)
        train = self.acc.line("step", "train_acc", source=self.steps, color=_LOSS_COLOR, line_width=2,
                              legend_label="train")
        self.acc.line("step", "test_acc", source=self.epochs, color=_TEST_COLOR, line_width=2, legend_label="test")
        self.acc.scatter("step", "test_acc", source=self.epochs, color=_TEST_COLOR, size=6, legend_label="test")
        tips = [("step", "@step"), ("train acc", "@train_acc{0.00%}")]
        self.acc.add_tools(HoverTool(renderers=[train], tooltips=tips, mode="vline"))
        self.acc.legend.location = "bottom_right"
        for fig in (self.loss, self.acc):
            fig.vspan(x="step", source=self.marks, **_MARK)  # the knob changes
        self.update()

    def panes(self) -> tuple[pn.pane.Bokeh, pn.pane.Bokeh]:
        """The two figures as Panel panes (CSS classes ``plot-loss`` and ``plot-acc``)."""
        return (figure_pane(self.loss, "plot-loss"),
                figure_pane(self.acc, "plot-acc"))

    def update(self) -> None:
        """Stream the rows the state took since the last call (all of them again after a new run)."""
        s = self.state
        if s.curves_generation != self._generation:
            self._generation = s.curves_generation
            self._taken = {"steps": 0, "epochs": 0}
            self.steps.data = {c: np.array([], dtype=float) for c in self.STEP_COLS}
            self.epochs.data = {c: np.array([], dtype=float) for c in self.EPOCH_COLS}
            self._markers = []
            self.marks.data = {"step": np.array([], dtype=float)}
        for name, buf, source, cols in (("steps", s.steps, self.steps, self.STEP_COLS),
                                        ("epochs", s.epoch_rows, self.epochs, self.EPOCH_COLS)):
            data = buf.data
            new = data.iloc[self._taken[name]:] if len(data) > self._taken[name] else None
            if new is not None and len(new):
                source.stream(_columns(new, cols))
                self._taken[name] = len(data)
        markers = list(s.markers)
        if markers != self._markers:
            self._markers = markers
            self.marks.data = {"step": np.asarray(markers, dtype=float)}
