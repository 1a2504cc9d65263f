"""Checkpoints: model, optimizer and quantizer state in one ``torch.save`` file.

Files hold only tensors and plain containers, so :func:`load_checkpoint` reads them with
``torch.load(weights_only=True)`` (no pickled code is ever executed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .qlayers import quantized_layers

__all__ = ["save_checkpoint", "load_checkpoint", "CHECKPOINT_KEYS"]

CHECKPOINT_KEYS = ("model", "optimizer", "quant", "config", "step", "epoch", "next_epoch", "rng", "scheme_state",
                   "generators")


def module_generators(model: nn.Module) -> dict[str, torch.Generator]:
    """Random generators that modules own as ``generator`` (DFQ's Gumbel gates), by module path:
    part of the training state, so a resumed run draws the same noise."""
    return {name: g for name, m in model.named_modules() if isinstance(g := getattr(m, "generator", None),
                                                                         torch.Generator)}


def save_checkpoint(path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer, config: dict[str, Any],
                    step: int, epoch: int, next_epoch: int, rng: torch.Tensor,
                    scheme_state: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "quant": [layer.quant_state() for _, layer in quantized_layers(model)],
        "config": json.dumps(config, default=str),
        "step": int(step),
        "epoch": int(epoch),
        "next_epoch": int(next_epoch),
        "rng": rng,
        "scheme_state": json.dumps(scheme_state or {}, default=str),
        "generators": {name: g.get_state() for name, g in module_generators(model).items()},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``.

    Returns:
        dict with keys :data:`CHECKPOINT_KEYS`; ``config`` and ``scheme_state`` parsed from JSON.

    Raises:
        ValueError: the file is missing or not a checkpoint of this engine.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"checkpoint {p} does not exist")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is "not a checkpoint"
        raise ValueError(f"{p} is not a loadable checkpoint: {exc}") from exc
    if not isinstance(ck, dict) or not all(k in ck for k in ("model", "optimizer", "config", "step")):
        raise ValueError(f"{p} is not a Lowbit Explorer checkpoint")
    ck["config"] = json.loads(ck["config"])
    ck["scheme_state"] = json.loads(ck.get("scheme_state") or "{}")
    ck.setdefault("generators", {})  # checkpoints written before module generators were saved
    return ck


def restore_generators(model: nn.Module, states: dict[str, torch.Tensor]) -> None:
    """Set the module generators of :func:`module_generators` from a checkpoint's states."""
    gens = module_generators(model)
    for name, state in states.items():
        if name in gens:
            gens[name].set_state(state)
