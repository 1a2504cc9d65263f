"""The seeds' cost model: operation counts of a training iteration (MLS paper, Table 1) and the energy
estimate of MLS App. E (Eq. 9). ``python -m core.cost MODEL [--batch B] [--energy]`` prints them.

``core.train.cost`` (the effective BitOPs of a run) builds on :func:`layer_macs` from here.
"""

from __future__ import annotations

from .ops import PAPER_TABLE1, TABLE1_ROWS, LayerOps, OpCounts, count_model, count_ops, layer_macs, layer_partial_sums

__all__ = ["LayerOps", "OpCounts", "count_ops", "count_model", "layer_macs", "layer_partial_sums",
           "TABLE1_ROWS", "PAPER_TABLE1"]
