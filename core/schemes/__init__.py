"""The papers' training schemes, registered with :func:`core.train.register_scheme` on import:
``logbtq`` (LogBTQ paper), ``niti`` (NITI paper), ``sbm``, ``cpt``, ``pfq``, ``dfq`` (SBM, CPT and
FracTrain, as the survey describes them), and the low-precision training recipes ``fp8``
(TransformerEngine), ``mxfp8`` (OCP MX) and ``nvfp4`` (NVIDIA's NVFP4 recipe) of :mod:`core.schemes.recipes`.

Importing this package (or ``core.train``, which imports it) makes them available to
``get_scheme``; docs/papers.md says how the papers are read, docs/schemes.md how the schemes are used.
"""

from __future__ import annotations

from core.train.cost import BitopsCounter, attach_counter, cost_rows, spec_bits
from .dfq import DFQLayer, DFQScheme, gumbel_hard
from .logbtq import ChunkedSGD, ClampQuant, LogBTQScheme, TailBound, psi, tail_bound
from .niti import NitiNet, NitiScheme, integer_ce_grad
from .recipes import FP8Scheme, MXFP8Scheme, NVFP4Scheme
from .survey import (CPTScheme, PFQScheme, RangeBatchNorm, SBMScheme, cpt_bits, plateau,
                     precision_range_test)

__all__ = [
    "LogBTQScheme", "psi", "tail_bound", "TailBound", "ClampQuant", "ChunkedSGD",
    "NitiScheme", "NitiNet", "integer_ce_grad",
    "SBMScheme", "RangeBatchNorm", "CPTScheme", "cpt_bits", "precision_range_test", "PFQScheme", "plateau",
    "DFQScheme", "DFQLayer", "gumbel_hard",
    "FP8Scheme", "MXFP8Scheme", "NVFP4Scheme",
    "BitopsCounter", "attach_counter", "cost_rows", "spec_bits",
]
