"""Configs and the scheme registry: validation, dict/TOML round trips, dotted changes, live keys."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import pytest

import core
from core.train import (
    SCHEMES,
    DataConfig,
    OptimConfig,
    QuantConfig,
    RunConfig,
    Scheme,
    TelemetryConfig,
    TensorQuant,
    get_scheme,
    list_schemes,
    register_scheme,
)
from core.train.config import coerce_value, lr_factor


def test_builtin_schemes_registered():
    assert {"fp32", "amp", "mls", "custom"} <= set(list_schemes())
    # the papers' schemes come with core.train, no extra import needed
    assert {"logbtq", "niti", "sbm", "cpt", "pfq"} <= set(list_schemes())
    with pytest.raises(ValueError, match="unknown scheme 'bogus'.*known: amp, cpt, custom"):
        get_scheme("bogus")
    with pytest.raises(ValueError, match="no field.*bogus"):
        get_scheme("mls", bogus=1)


def test_scheme_configs_are_frozen_and_validated():
    s = get_scheme("mls", mx=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.mx = 4  # type: ignore[misc]
    assert s.spec == "mls(ex=2,mx=3,eg=8,mg=1,group=nc)"
    with pytest.raises(ValueError):
        get_scheme("mls", group="hw")
    with pytest.raises(ValueError):
        get_scheme("custom", w="fp8_e9m9")
    with pytest.raises(ValueError, match="amp.dtype"):
        get_scheme("amp", dtype="fp8")
    c = get_scheme("custom", w=" fp8_e4m3 ", e="none")
    assert c.w == str(core.parse_format("fp8_e4m3")) and c.e is None
    assert c.quant() == QuantConfig(w=TensorQuant("fp8_e4m3"))


def test_new_scheme_plugs_in_by_decorator():
    @register_scheme("test_halfbits")
    @dataclass(frozen=True)
    class Half(Scheme):
        bits: int = field(default=8, metadata={"doc": "integer bits"})

        def quant(self):
            return QuantConfig(w=f"int(bits={self.bits},scale=tensor)")

    try:
        s = get_scheme("test_halfbits", bits=4)
        assert s.to_dict() == {"name": "test_halfbits", "first_last": False, "bits": 4}
        assert Scheme.from_dict(s.to_dict()) == s
        assert [d["name"] for d in Half.describe()] == ["first_last", "bits"]
        cfg = RunConfig(scheme=s).with_changes({"bits": 6})  # bare scheme field -> scheme.bits
        assert cfg.scheme.bits == 6
    finally:
        SCHEMES.pop("test_halfbits")

    with pytest.raises(TypeError, match="frozen dataclass"):
        register_scheme("mutable")(type("Mutable", (Scheme,), {}))


def test_run_config_round_trips_through_dict_and_toml(tmp_path):
    cfg = RunConfig(data=DataConfig(name="digits", train_subset=100), scheme=get_scheme("mls", ex=3),
                    optim=OptimConfig(lr=0.02, milestones=(2, 4), schedule="step"),
                    telemetry=TelemetryConfig(shadow=("fp8_e4m3", "mu8(mu=255,range=2)")), epochs=3)
    d = cfg.to_dict()
    assert RunConfig.from_dict(d) == cfg
    toml = tmp_path / "run.toml"
    toml.write_text(
        'epochs = 3\nseed = 4\n[data]\nname = "digits"\ntrain_subset = 100\n'
        '[scheme]\nname = "mls"\nex = 3\nfirst_last = true\n[optim]\nlr = 0.02\n'
        '[telemetry]\nshadow = ["fp8_e4m3"]\nevery = 5\n'
    )
    t = RunConfig.from_toml(toml)
    assert t.scheme == get_scheme("mls", ex=3, first_last=True) and t.seed == 4 and t.telemetry.every == 5
    toml.write_text("[data]\nnmae = 'digits'\n")
    with pytest.raises(ValueError, match="unknown key.*nmae"):
        RunConfig.from_toml(toml)
    toml.write_text("epochs = [")
    with pytest.raises(ValueError, match="not valid TOML"):
        RunConfig.from_toml(toml)


def test_with_changes_dotted_shorthand_and_coercion():
    cfg = RunConfig(scheme=get_scheme("mls"))
    new = cfg.with_changes({"optim.lr": "0.05", "mx": "3", "telemetry.shadow": "fp8_e4m3,bf16", "epochs": 7})
    assert new.optim.lr == 0.05 and new.scheme.mx == 3 and new.epochs == 7
    assert new.telemetry.shadow == (str(core.parse_format("fp8_e4m3")), "bf16")
    assert cfg.optim.lr == 0.1  # original untouched
    assert cfg.with_changes({"scheme": "custom"}).scheme.name == "custom"
    assert cfg.with_changes({"scheme": {"name": "amp", "dtype": "fp16"}}).scheme.dtype == "fp16"
    with pytest.raises(ValueError, match="unknown config key 'optim.lrr'"):
        cfg.with_changes({"optim.lrr": 1})
    with pytest.raises(ValueError, match="cannot change while a run is going"):
        cfg.with_changes({"data.name": "mnist"}, live=True)
    with pytest.raises(ValueError, match="cannot read 'abc' as int"):
        cfg.with_changes({"scheme.mx": "abc"})


def test_validation_messages_name_the_field():
    with pytest.raises(ValueError, match="OptimConfig.lr"):
        OptimConfig(lr=-1)
    with pytest.raises(ValueError, match="TelemetryConfig.tensors"):
        TelemetryConfig(tensors=("x",))
    with pytest.raises(ValueError):
        TelemetryConfig(shadow=("nope(",))
    with pytest.raises(ValueError, match="RunConfig.epochs"):
        RunConfig(epochs=0)
    with pytest.raises(TypeError, match="RunConfig.optim"):
        RunConfig(optim=3)  # type: ignore[arg-type]


def test_coerce_value_and_lr_schedule():
    assert coerce_value("none", int | None) is None
    assert coerce_value("1,2", tuple[int, ...]) == (1, 2)
    assert coerce_value("off", bool) is False
    with pytest.raises(ValueError):
        coerce_value(1.5, int)
    o = OptimConfig(schedule="cosine")
    assert lr_factor(0, 100, 10, o) == 1.0 and abs(lr_factor(50, 100, 10, o) - 0.5) < 1e-12
    s = OptimConfig(schedule="step", milestones=(2,), gamma=0.1)
    assert lr_factor(19, 100, 10, s) == 1.0 and lr_factor(20, 100, 10, s) == pytest.approx(0.1)
    w = OptimConfig(warmup_steps=4)
    assert lr_factor(1, 100, 10, w) == 0.5


def test_a_training_subset_smaller_than_one_batch_is_refused():
    """``train_subset`` < ``batch_size`` is refused when the config is made (before any data loads)."""
    with pytest.raises(ValueError, match=r"the training set has 1 example \(data.train_subset\), fewer than one "
                                         r"batch \(batch_size 64\)"):
        RunConfig(data=DataConfig(name="digits", train_subset=1))
    with pytest.raises(ValueError, match=r"has 63 examples .* \(batch_size 64\)"):
        RunConfig.from_dict({"data": {"train_subset": 63}})
    with pytest.raises(ValueError, match=r"has 10 examples .* \(batch_size 64\)"):
        RunConfig().with_changes({"data.train_subset": 10})
    with pytest.raises(ValueError, match=r"has 64 examples .* \(batch_size 65\)"):
        RunConfig(data=DataConfig(train_subset=64)).with_changes({"batch_size": "65"})
    # exactly one batch is fine; a subset and a batch size changed together pass in either order
    assert RunConfig(data=DataConfig(train_subset=64)).batch_size == 64
    assert RunConfig().with_changes({"data.train_subset": 10, "batch_size": 8}).data.train_subset == 10
    small = RunConfig(data=DataConfig(train_subset=10), batch_size=8)
    big = small.with_changes({"batch_size": 100, "data.train_subset": 200})
    assert (big.batch_size, big.data.train_subset) == (100, 200)
    with pytest.raises(ValueError, match="fewer than one batch"):  # nothing half-applied leaks out
        small.with_changes({"batch_size": 100, "data.train_subset": 50})
    assert RunConfig(data=DataConfig(train_subset=2), batch_size=2).with_changes({"epochs": 2}).epochs == 2


def test_a_subset_smaller_than_one_batch_is_refused_by_run_and_the_cli(tmp_path, capsys):
    from core.train import Run
    from core.train.__main__ import build_parser, config_from_args, main

    with pytest.raises(ValueError, match="the training set has 1 example"):
        Run({"data": {"name": "digits", "train_subset": 1}})
    store = tmp_path / "runs.sqlite"
    assert main(["--dataset", "digits", "--train-subset", "1", "--store", str(store), "--no-progress"]) == 2
    out = capsys.readouterr()
    assert out.err == ("error: the training set has 1 example (data.train_subset), fewer than one batch "
                       "(batch_size 64): lower batch_size or raise data.train_subset\n")
    assert out.out == "" and not store.exists()
    assert main(["--train-subset", "100", "--batch-size", "128", "--store", str(store), "--no-progress"]) == 2
    assert "has 100 examples" in capsys.readouterr().err and not store.exists()
    # the CLI applies --train-subset before --batch-size: the pair is checked together
    cfg = config_from_args(build_parser().parse_args(["--train-subset", "10", "--batch-size", "8"]))
    assert (cfg.data.train_subset, cfg.batch_size) == (10, 8)


def test_a_subset_larger_than_the_dataset_still_trains_on_all_of_it():
    from core.train import Run

    run = Run(RunConfig(data=DataConfig(name="digits", train_subset=100_000), epochs=1, max_steps=1)).prepare()
    assert run.data is not None and len(run.data.train) == 1797 - 359
    assert run.steps_per_epoch == math.ceil((1797 - 359) / 64)


def test_a_training_split_smaller_than_one_batch_is_refused_when_the_data_loads(tmp_path, capsys):
    """Without a subset the split's size is known only once the data is loaded: ``Run.prepare`` refuses it
    there, before anything is written (digits: 1,438 training examples at the default test fraction)."""
    from core.train import Run
    from core.train.__main__ import main

    with pytest.raises(ValueError, match=r"the training set has 1438 examples \(the training split of digits\), "
                                         r"fewer than one batch \(batch_size 1439\)"):
        Run(RunConfig(data=DataConfig(name="digits"), batch_size=1439)).prepare()
    # a subset larger than the split is cut to the split: the split's size is what counts
    with pytest.raises(ValueError, match="has 1438 examples"):
        Run(RunConfig(data=DataConfig(name="digits", train_subset=5000), batch_size=2000)).prepare()
    assert Run(RunConfig(data=DataConfig(name="digits"), batch_size=1438, max_steps=1)).prepare().steps_per_epoch == 1
    store = tmp_path / "runs.sqlite"
    assert main(["--dataset", "digits", "--batch-size", "5000", "--store", str(store), "--no-progress"]) == 2
    out = capsys.readouterr()
    assert out.err.count("\n") == 1 and out.err.startswith("error: the training set has 1438 examples"), out.err
    assert "Traceback" not in out.err and out.out == ""
    if store.exists():  # the store may be made before the data loads, but holds no run
        from core.store import RunStore
        assert RunStore(store).list_runs().empty


def test_a_run_stored_before_the_batch_check_still_loads(tmp_path):
    """A run whose stored config has a subset smaller than one batch (stored before that check) is still
    shown: ``RunConfig.from_stored`` skips the checks that are for new runs; ``from_dict`` refuses it."""
    from core.store import RunStore
    from core.sweep.remote import RemoteRun

    old = RunConfig().to_dict() | {"data": {**RunConfig().to_dict()["data"], "train_subset": 10}}
    with pytest.raises(ValueError, match="fewer than one batch"):
        RunConfig.from_dict(old)
    assert RunConfig.from_stored(old).data.train_subset == 10
    store = RunStore(tmp_path / "runs.sqlite")
    rid = store.create_run(old, name="old", dataset="digits", model="mlp", scheme="fp32", epochs=1)
    assert RemoteRun(store, rid).config.data.train_subset == 10
