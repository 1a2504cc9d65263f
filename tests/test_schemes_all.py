"""Every scheme of the papers: registered on import, serialisable, trains the digits MLP to well above
chance and ends ``done``; parameters out of their domain fail at config time."""

from __future__ import annotations


import pytest

import core.schemes  # noqa: F401
from core.schemes.compare import train
from core.train import RunConfig, Scheme, get_scheme, list_schemes


@pytest.fixture(autouse=True)
def _stores_in_tmp(tmp_path, monkeypatch):
    """compare.train() keeps its runs in the default store: make that a store in tmp_path."""
    monkeypatch.setenv("LOWBIT_STORE", str(tmp_path / "runs.sqlite"))


SEED_SCHEMES = {"logbtq": dict(k=1), "niti": {}, "sbm": {}, "cpt": {}, "pfq": {}, "dfq": {}}


def test_registered():
    assert set(SEED_SCHEMES) <= set(list_schemes())


@pytest.mark.parametrize("name", sorted(SEED_SCHEMES))
def test_roundtrip(name):
    s = get_scheme(name, **SEED_SCHEMES[name])
    assert Scheme.from_dict(s.to_dict()) == s
    cfg = RunConfig(scheme=s)
    assert RunConfig.from_dict(cfg.to_dict()).scheme == s


@pytest.mark.parametrize("name", sorted(SEED_SCHEMES))
def test_trains_digits_mlp(name):
    r = train(get_scheme(name, **SEED_SCHEMES[name]), epochs=2)
    assert r.status == "done", r.error
    assert r.result["test_acc"] > 0.7  # chance is 0.1
    assert len(r.store.metrics(r.id, role="cost", name="bitops")) > 0


@pytest.mark.parametrize("name,kw", [
    ("logbtq", dict(u=0)), ("logbtq", dict(mu=-1)), ("logbtq", dict(k=0)),
    ("niti", dict(m_u=0)), ("niti", dict(m_u=8)),
    ("cpt", dict(b_min=6, b_max=4)),
    ("dfq", dict(levels=(6, 4))), ("dfq", dict(levels=(4, 20))), ("dfq", dict(beta=-1)), ("dfq", dict(tau=0)),
])
def test_bad_input_at_config_time(name, kw):
    with pytest.raises(ValueError):
        get_scheme(name, **kw)
    with pytest.raises(ValueError):
        RunConfig.from_dict({"scheme": {"name": name, **kw}})
