"""Number formats: frozen specs from short strings, one registry (readings of the papers: docs/papers.md).

``parse_format("mls(ex=2,mx=1,eg=8,mg=1,group=nc)")`` -> a frozen spec;
``str(spec)`` round-trips.  Families: ``float`` (fp32/fp16/bf16/fp8_*/fp6/fp4
aliases), ``int``, ``fixed``, ``mls``, ``mulaw``/``mu8``, ``niti``, ``mx``, ``bfp``, ``scaled``, ``nvfp4``,
``p3109`` (binary8p*, fp8_e*fnuz), ``e8m0``, ``codebook``/``nf4``.
"""

from .base import ROUNDING_MODES, Encoded, FormatSpec
from .registry import ALIASES, FAMILIES, family_fields, parse_format
from . import floats as _floats  # noqa: F401  (registers families/aliases)
from . import integer as _integer  # noqa: F401
from . import mls as _mls  # noqa: F401
from . import mulaw as _mulaw  # noqa: F401
from . import mx as _mx  # noqa: F401
from . import p3109 as _p3109  # noqa: F401  (p3109, e8m0, fnuz)
from . import codebook as _codebook  # noqa: F401  (codebook, nf4)
from . import scaled_tensor as _scaled_tensor  # noqa: F401  (scaled, nvfp4)
from .floats import FloatFormat
from .integer import BFPFormat, FixedFormat, IntFormat, NitiFormat, pseudo_stochastic_round
from .mls import MLSFormat, group_scale_ceil, group_scale_set
from .mulaw import MU8Format, MuLawFormat
from .mx import MXFormat
from .p3109 import E8M0Format, P3109Format
from .codebook import CodebookFormat, NF4Format, codebook_format, register_codebook
from .scaled_tensor import NVFP4Format, ScaledTensorFormat, quantize_with_scale, scale_from_amax

__all__ = [
    "ROUNDING_MODES", "Encoded", "FormatSpec", "ALIASES", "FAMILIES", "family_fields",
    "parse_format", "FloatFormat", "IntFormat", "FixedFormat", "NitiFormat", "BFPFormat",
    "MLSFormat", "MuLawFormat", "MU8Format", "MXFormat", "group_scale_ceil",
    "group_scale_set", "pseudo_stochastic_round", "ScaledTensorFormat", "NVFP4Format", "quantize_with_scale",
    "scale_from_amax",
    "P3109Format", "E8M0Format", "CodebookFormat", "NF4Format", "codebook_format", "register_codebook",
]
