"""The seed papers' training schemes (issue 5), registered with :func:`core.train.register_scheme`
on import: ``logbtq`` (seed 001), ``niti`` (seed 002), ``sbm``, ``cpt``, ``pfq``, ``dfq`` (seed 003).

Importing this package (or ``core.train`` once it imports it) makes them available to
``get_scheme``; SPEC-NOTES sections 2-4 say how the papers are read.
"""

from __future__ import annotations

from .cost import BitopsCounter, attach_counter, cost_rows, spec_bits
from .dfq import DFQLayer, DFQScheme, gumbel_hard
from .logbtq import ChunkedSGD, ClampQuant, LogBTQScheme, psi, tail_bound
from .niti import NitiNet, NitiScheme, integer_ce_grad
from .survey import (CPTScheme, PFQScheme, RangeBatchNorm, SBMScheme, cpt_bits, plateau,
                     precision_range_test)

__all__ = [
    "LogBTQScheme", "psi", "tail_bound", "ClampQuant", "ChunkedSGD",
    "NitiScheme", "NitiNet", "integer_ce_grad",
    "SBMScheme", "RangeBatchNorm", "CPTScheme", "cpt_bits", "precision_range_test", "PFQScheme", "plateau",
    "DFQScheme", "DFQLayer", "gumbel_hard",
    "BitopsCounter", "attach_counter", "cost_rows", "spec_bits",
]
