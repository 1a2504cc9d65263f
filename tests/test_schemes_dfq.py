"""FracTrain DFQ (the survey; docs/papers.md#fractrain-dfq): per-input branch selection, the cost term's effect,
determinism."""

from __future__ import annotations

import tempfile

import pytest
import torch
from torch import nn

from core.schemes.compare import train
from core.schemes.dfq import DFQLayer, DFQScheme, dfq_layers
from core.train import get_scheme, quantized_layers


@pytest.fixture(autouse=True)
def _stores_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def test_each_input_gets_the_output_of_the_branch_its_gate_picks():
    torch.manual_seed(0)
    scheme = DFQScheme(levels=(2, 8))
    model = scheme.prepare(nn.Sequential(nn.Linear(6, 5)), seed=3)
    block = model[0]
    assert isinstance(block, DFQLayer) and [q.quant.w.fmt for _, q in quantized_layers(model)] == [
        "int(bits=2,scale=tensor)", "int8"]  # canonical alias
    with torch.no_grad():  # gate: branch 1 (8 bits) iff the first feature is positive
        block.gate[0].weight.zero_()
        block.gate[0].weight[0, 0] = 1.0
        block.gate[0].bias.zero_()
        block.gate[2].weight.zero_()
        block.gate[2].weight[1, 0] = 10.0
        block.gate[2].bias.copy_(torch.tensor([1.0, 0.0]))
    x = torch.randn(32, 6)
    model.eval()
    y = model(x)
    high = x[:, 0] > 0.1
    low = x[:, 0] <= 0
    y2, y8 = block.branches[0](x), block.branches[1](x)
    assert high.any() and low.any()
    assert torch.equal(y[high], y8[high]) and torch.equal(y[low], y2[low])
    assert not torch.equal(y2, y8)  # the branches really differ in precision
    assert block.branches[0].weight is block.branches[1].weight  # one set of parameters


def test_cost_term_trades_bitops_for_accuracy_and_gates_adapt():
    cheap = train(get_scheme("dfq", beta=2.0), epochs=3)
    free = train(get_scheme("dfq", beta=0.0), epochs=3)
    for r in (cheap, free):
        assert r.status == "done" and r.result["test_acc"] > 0.7
    # the backbone's BitOPs (the gates run in float at a fixed cost and are counted apart too)
    ops = {k: r.model._bitops_counter.total - r.model._bitops_counter.parts["gate"]
           for k, r in (("cheap", cheap), ("free", free))}
    assert ops["cheap"] < 0.8 * ops["free"], ops
    assert cheap.model._bitops_counter.parts["gate"] == free.model._bitops_counter.parts["gate"] > 0
    m = cheap.store.metrics(cheap.id, role="dfq", name="bits_mean")
    assert len(m) and set(m.layer) == {n for n, _ in dfq_layers(cheap.model)}
    assert m.value.min() >= 3 and m.value.max() <= 8
    cost = cheap.store.metrics(cheap.id, role="dfq", name="relative_cost").value
    assert 0 < cost.iloc[-1] < cost.iloc[0]  # the gates learned to pick cheaper branches


def test_gates_are_counted_in_the_bitops():
    """Hand count: Linear(6, 5) with a gate Linear(6, 16) -> ReLU -> Linear(16, 2): per input 30 MACs of
    the branch it picks (b x b bits) and 6*16 + 16*2 = 128 gate MACs at 32 x 32 bits."""
    scheme = DFQScheme(levels=(2, 8), hidden=16)
    model = scheme.prepare(nn.Sequential(nn.Linear(6, 5)), seed=3)
    block, counter = model[0], model._bitops_counter
    assert block.gate_macs_per_input == 128
    model.train()
    model(torch.randn(4, 6))
    picks = block.last_choice.tolist()
    backbone = sum(30 * (2, 8)[k] ** 2 for k in picks)
    assert counter.parts == {"gate": 4 * 128 * 32 * 32}
    assert counter.total == backbone + 4 * 128 * 32 * 32
    model.eval()
    model(torch.randn(4, 6))  # evaluation forwards are not counted
    assert counter.total == backbone + 4 * 128 * 32 * 32


def test_dfq_runs_are_deterministic():
    a = train(get_scheme("dfq"), epochs=1)
    b = train(get_scheme("dfq"), epochs=1)
    assert a.result["test_acc"] == b.result["test_acc"]
    assert a.model._bitops_counter.total == b.model._bitops_counter.total


def test_structural_changes_are_refused_live_and_tau_applies():
    """levels/hidden/first_last shape the DFQ model: a live change is refused with a clear error
    (nothing changes), as is a live switch to or from a scheme that rebuilds the model; tau applies."""
    from core.train import RunConfig

    cfg = RunConfig(scheme=get_scheme("dfq"))
    with pytest.raises(ValueError, match="'scheme.levels' shapes the dfq model"):
        cfg.with_changes({"scheme.levels": "4,8"}, live=True)
    with pytest.raises(ValueError, match="cannot switch a running run from 'dfq' to 'mls'"):
        cfg.with_changes({"scheme": "mls"}, live=True)
    with pytest.raises(ValueError, match="from 'mls' to 'niti'"):
        RunConfig(scheme=get_scheme("mls")).with_changes({"scheme": "niti"}, live=True)
    assert cfg.with_changes({"scheme.levels": "4,8"}).scheme.levels == (4, 8)  # fine before a run
    assert cfg.with_changes({"scheme.beta": 0.5, "scheme.tau": 0.5}, live=True).scheme.tau == 0.5
    assert RunConfig(scheme=get_scheme("mls")).with_changes({"scheme": "cpt"}, live=True).scheme.name == "cpt"

    from core.train import StepContext

    r = train(get_scheme("dfq"), epochs=1)
    assert {layer.tau for _, layer in dfq_layers(r.model)} == {1.0}
    get_scheme("dfq", tau=0.25).schedule(StepContext(model=r.model))  # what the engine calls every step
    assert {layer.tau for _, layer in dfq_layers(r.model)} == {0.25}
