"""Number formats: frozen specs from short strings, one registry (readings of the papers: docs/papers.md).

``parse_format("mls(ex=2,mx=1,eg=8,mg=1,group=nc)")`` -> a frozen spec;
``str(spec)`` round-trips.  Families: ``float`` (fp32/fp16/bf16/fp8_*/fp6/fp4
aliases), ``int``, ``fixed``, ``mls``, ``mulaw``/``mu8``, ``niti``, ``mx``, ``bfp``.
"""

from .base import ROUNDING_MODES, Encoded, FormatSpec
from .registry import ALIASES, FAMILIES, family_fields, parse_format
from . import floats as _floats  # noqa: F401  (registers families/aliases)
from . import integer as _integer  # noqa: F401
from . import mls as _mls  # noqa: F401
from . import mulaw as _mulaw  # noqa: F401
from . import mx as _mx  # noqa: F401
from .floats import FloatFormat
from .integer import BFPFormat, FixedFormat, IntFormat, NitiFormat, pseudo_stochastic_round
from .mls import MLSFormat, group_scale_ceil, group_scale_set
from .mulaw import MU8Format, MuLawFormat
from .mx import MXFormat

__all__ = [
    "ROUNDING_MODES", "Encoded", "FormatSpec", "ALIASES", "FAMILIES", "family_fields",
    "parse_format", "FloatFormat", "IntFormat", "FixedFormat", "NitiFormat", "BFPFormat",
    "MLSFormat", "MuLawFormat", "MU8Format", "MXFormat", "group_scale_ceil",
    "group_scale_set", "pseudo_stochastic_round",
]
