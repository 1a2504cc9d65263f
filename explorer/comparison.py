"""The comparison data model (Panel-free): stored runs loaded for comparing.

:func:`load_comparison` reads runs from a :class:`core.store.RunStore` into a :class:`Comparison`
(configs, per-step and per-epoch curves, a summary table); :func:`run_label` names a run by what
differs from its scheme's defaults. The figures and files are :mod:`explorer.export`'s; the
Compare page (:mod:`explorer.compare_state`) reads the same model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd

__all__ = ["Comparison", "load_comparison", "run_label", "varying_keys", "flatten_config", "final_table", "open_store",
           "STEP_METRICS", "EPOCH_METRICS", "COST_METRICS"]

#: per-step curves available from ``store.scalars``
STEP_METRICS: tuple[str, ...] = ("loss", "train_acc", "lr", "step_time")
#: the runs' cost (role ``cost``): effective BitOPs and the MLS App. E energy estimate (core.train.cost)
COST_METRICS: tuple[str, ...] = ("bitops", "energy", "energy_ratio")
#: per-epoch curves available from ``store.epochs``
EPOCH_METRICS: tuple[str, ...] = ("test_acc", "test_loss", "epoch_train_loss", "epoch_train_acc")
#: most config keys outside the scheme that a run's label names (those that differ most between the runs)
LABEL_KEYS = 3


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"scheme": {"mx": 1}}`` -> ``{"scheme.mx": 1}`` (lists become tuples)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_config(v, key + "."))
        else:
            out[key] = tuple(v) if isinstance(v, list) else v
    return out


def _scheme_defaults(name: str) -> dict[str, Any]:
    try:
        from core.train import get_scheme

        return get_scheme(name).to_dict()
    except (ImportError, ValueError):
        return {}


def _short(v: Any) -> str:
    return ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)


def run_label(run_id: str, config: Mapping[str, Any], vary: Sequence[str] = ()) -> str:
    """Short label: ``<id6> <scheme>(<fields>) <key>=<value> ... "<name>"``.

    The scheme's fields are those that differ from its defaults plus those in ``vary`` (the keys
    that differ between the runs compared, so a run at a default value still shows it: ``mx=1``
    next to ``mx=2``); the other ``vary`` keys follow by their last part (``lr=0.05``), then the
    run's name when it has one."""
    sch = dict(config.get("scheme", {}))
    name = str(sch.get("name", "?"))
    defaults = _scheme_defaults(name)
    vary_fields = {k[len("scheme."):] for k in vary if k.startswith("scheme.")}
    diff = [f"{k}={_short(v)}" for k, v in sch.items()
            if k != "name" and (defaults.get(k, object()) != v or k in vary_fields)]
    flat = flatten_config(config)
    rest = [f"{k.rsplit('.', 1)[-1]}={_short(flat[k])}" for k in vary
            if not k.startswith("scheme.") and k != "name" and k in flat]
    run_name = str(config.get("name") or "")
    return " ".join([f"{run_id[:6]} {name}" + (f"({','.join(diff)})" if diff else ""), *rest,
                     *([f'"{run_name}"'] if run_name else [])])


@dataclass
class Comparison:
    """Everything needed to draw and describe a comparison of stored runs.

    Attributes:
        run_ids: the runs, in the order given.
        labels: short label per run id.
        configs: ``RunConfig.to_dict()`` per run id.
        steps: per-step scalars per run id (``store.scalars``).
        epochs: per-epoch values per run id (``store.epochs``).
        summary: one row per run: id, label, status, dataset, model, scheme, steps, final/best test
            accuracy, final loss, BitOPs and energy (``COST_METRICS``), plus the flattened config columns.
    """

    run_ids: list[str]
    labels: dict[str, str]
    configs: dict[str, dict[str, Any]]
    steps: dict[str, pd.DataFrame]
    epochs: dict[str, pd.DataFrame]
    summary: pd.DataFrame
    store_path: str = ""

    def varying_keys(self) -> list[str]:
        """Flattened config keys whose values differ between the runs (candidate grid axes), best axis
        first: keys every run has, with the most distinct values (``scheme.name`` first among equals,
        then the scheme's fields), before keys only some runs have (a field of one scheme only)."""
        return varying_keys([self.configs[r] for r in self.run_ids])


def varying_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The flattened keys whose values differ between ``configs``, best grid axis first (see
    :meth:`Comparison.varying_keys`)."""
    if len(configs) < 2:
        return []
    flat = [flatten_config(c) for c in configs]
    keys = set().union(*flat)

    def rank(k: str) -> tuple[Any, ...]:
        present = [repr(f[k]) for f in flat if k in f]
        # the run's name labels it, it is no axis: last
        return (len(present) < len(flat), k == "name", k != "scheme.name", -len(set(present)),
                not k.startswith("scheme."), k)

    return sorted((k for k in keys if len({repr(f.get(k)) for f in flat}) > 1), key=rank)


def open_store(store: Any) -> Any:
    """``store`` as a :class:`core.store.RunStore` (a store, a path, or None for the default)."""
    from core.store import RunStore

    return store if isinstance(store, RunStore) else RunStore(store)


def load_comparison(run_ids: Sequence[str], store: Any = None) -> Comparison:
    """Load runs from the store.

    Args:
        run_ids: run ids (unique prefixes of at least 4 characters are accepted).
        store: a ``RunStore``, a store path, or None for the default store.

    Raises:
        ValueError: no runs given, or an id that matches no run (or several).
    """
    st = open_store(store)
    if not run_ids:
        raise ValueError("no runs to compare")
    known = [str(r) for r in st.list_runs()["run_id"]]
    ids: list[str] = []
    for rid in run_ids:
        match = [k for k in known if k == rid] or [k for k in known if len(rid) >= 4 and k.startswith(rid)]
        if len(match) != 1:
            raise ValueError(f"run {rid!r} {'is ambiguous' if match else 'is not in the store'} ({st.path})")
        if match[0] not in ids:
            ids.append(match[0])
    configs, steps, epochs, labels, rows = {}, {}, {}, {}, []
    infos = {rid: st.get_run(rid) for rid in ids}
    cfgs = {rid: infos[rid]["config"] for rid in ids}
    # at most the LABEL_KEYS best other keys (seed, lr ...): a label, not the config (that is in the table)
    others = [k for k in varying_keys(list(cfgs.values())) if not k.startswith("scheme.") and k != "name"]
    others = others[:LABEL_KEYS]
    for rid in ids:
        info = infos[rid]
        cfg = info["config"]
        configs[rid] = cfg
        # a scheme's fields that differ among the runs of that scheme (not every field of another scheme)
        same = [c for c in cfgs.values() if c.get("scheme", {}).get("name") == cfg.get("scheme", {}).get("name")]
        fields = [k for k in varying_keys(same) if k.startswith("scheme.")]
        labels[rid] = run_label(rid, cfg, fields + others)
        sc = st.scalars(rid)
        ep = st.epochs(rid)
        steps[rid] = sc
        epochs[rid] = ep
        has_loss = len(sc) and "loss" in sc and sc["loss"].notna().any()
        final_loss = float(sc["loss"].dropna().iloc[-1]) if has_loss else math.nan
        row = {
            "run_id": rid, "label": labels[rid], "status": info.get("status"), "dataset": info.get("dataset"),
            "model": info.get("model"), "scheme": info.get("scheme"), "steps": info.get("step"),
            "final_test_acc": _num(info.get("final_test_acc")), "best_test_acc": _num(info.get("best_test_acc")),
            "final_loss": final_loss,
        }
        row.update({k: (str(v) if isinstance(v, tuple) else v) for k, v in flatten_config(cfg).items()})
        rows.append(row)
    from core.sweep.metrics import metric_values  # the cost columns: one query each (BitOPs, App. E energy)

    cost = {m: metric_values(st, ids, m) for m in COST_METRICS}
    for row in rows:
        row.update({m: cost[m].get(row["run_id"], math.nan) for m in COST_METRICS})
    return Comparison(ids, labels, configs, steps, epochs, pd.DataFrame(rows), str(st.path))


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def final_table(comp: Comparison) -> pd.DataFrame:
    """Final metrics: label, status, steps, final/best test accuracy, final loss, BitOPs and energy."""
    cols = ["label", "status", "steps", "final_test_acc", "best_test_acc", "final_loss", *COST_METRICS]
    return comp.summary.reindex(columns=cols)
