"""Property-based tests of the config loader: whatever the input (YAML text, nested mappings, override
strings, base chains), ``load_config`` returns a valid Config or raises ConfigError with a message;
never any other exception. A config that loads also survives its own dump unchanged."""

from __future__ import annotations

import os
import string
from pathlib import Path

import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from fcc_lt.config.load import load_config
from fcc_lt.config.schema import Config, all_keys
from fcc_lt.config.validate import validate
from fcc_lt.util.errors import ConfigError

# FCC_HYPOTHESIS_EXAMPLES=5000 for a deeper hunt; the default keeps the suite fast
SETTINGS = settings(max_examples=int(os.environ.get("FCC_HYPOTHESIS_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
KEYS = all_keys()
LEAVES = [k for k in KEYS if "." in k]
# the parameter names parts register, so that generated params sometimes hit real ones
PARAM_NAMES = ["gamma", "beta", "drw_start_epoch", "drs_start_epoch", "alpha", "depth", "width", "scale",
               "tau", "kappa", "location", "bias", "epsilon", "max_margin", "reweight", "base", "base_params"]
NAMES = ["ce", "focal", "ldam", "class_balanced", "progressive", "mixup", "remix", "cosine", "linear",
         "resnet_cifar", "resnet32", "cifar10", "cifar100", "json", "none", "instance", "nope"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-5, max_value=300),
    st.integers(),  # unbounded: includes ints beyond the float range
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2, max_value=2),
    st.text(max_size=12),
    st.sampled_from([*NAMES, "2e-4", "1e400", "nan", "auto", "cpu", "cuda:0", "sgd", "cosine", "multistep"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=8)), inner, max_size=4)),
    max_leaves=12)


@st.composite
def nested_configs(draw: st.DrawFn) -> dict:
    """Nested mappings built from real dotted keys (mostly) and stray ones, with any values."""
    raw: dict = {}
    for _ in range(draw(st.integers(0, 8))):
        key = draw(st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS).map(lambda k: k + "x"),
                             st.text(string.ascii_lowercase + "._", min_size=1, max_size=15)))
        parts = [p for p in key.split(".") if p] or ["x"]
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = draw(values)
    return raw


def sane_base(raw: dict) -> dict:
    """Keys every loadable tiny config needs, under the generated ones (so that some inputs load)."""
    base = {"train": {"epochs": 4, "milestones": [3], "warmup_epochs": 1}}
    for section, content in raw.items():
        if isinstance(content, dict) and isinstance(base.get(section), dict):
            base[section] = {**base[section], **content}
        else:
            base[section] = content
    return base


def check(load) -> Config | None:
    """Run ``load``; a ConfigError must carry a message, anything else escapes and fails the test."""
    try:
        cfg = load()
    except ConfigError as err:
        assert str(err).strip(), "a ConfigError without a message"
        return None
    assert isinstance(cfg, Config)
    validate(cfg)  # what loaded is valid, and validating again changes nothing
    return cfg


def assert_round_trip(cfg: Config, folder: Path) -> None:
    path = folder / "dumped.yaml"
    path.write_text(cfg.dump())
    again = load_config(path)
    assert again.to_dict() == cfg.to_dict()


@SETTINGS
@given(text=st.text(max_size=200))
@example(text="2001-02-30")
@example(text="train: {lr: !!float abc}")
@example(text="seed: !!timestamp x")
@example(text="[" * 600)
@example(text="out: !!python/object/apply:os.system ['true']")
@example(text="a: &x [*x]")
@example(text="\t- :")
def test_any_yaml_text_loads_or_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    check(lambda: load_config(path))


@SETTINGS
@given(raw=nested_configs())
@example(raw={"train": {"lr": 10**400}})
@example(raw={"train": {"warmup_epochs": 10**400, "schedule_epochs": 3}})
@example(raw={"train": {"schedule_epochs": 200, "epochs": 10}, "fcc": {"start_epoch": 10**400}})
@example(raw={"loss": {"name": "focal", "params": {"drw_start_epoch": True}}})
@example(raw={"data": {"subset_seed": 2**40}})
def test_any_mapping_loads_or_is_a_config_error(tmp_path: Path, raw: dict) -> None:
    path = tmp_path / "c.yaml"
    try:
        path.write_text(yaml.safe_dump(sane_base(raw), allow_unicode=True))
    except (yaml.YAMLError, ValueError):
        assume(False)
    cfg = check(lambda: load_config(path))
    if cfg is not None:
        assert_round_trip(cfg, tmp_path)


override_keys = st.one_of(st.sampled_from(LEAVES), st.sampled_from(KEYS),
                          st.sampled_from(["loss.params.", "sampler.params.", "mix.params.", "model.backbone_params.",
                                           "model.head_params."]).flatmap(
                              lambda p: st.sampled_from(PARAM_NAMES).map(lambda n: p + n)),
                          st.text(max_size=20))
override_values = st.one_of(st.sampled_from(["", "0", "-1", "1", "3", "true", "null", "[1, 2]", "{a: 1}", "1e999",
                                             "[", "]", "!!binary x", "2001-02-30", "'x'", "nan", *NAMES]),
                            st.integers().map(str), st.floats().map(str), st.text(max_size=15))


@SETTINGS
@given(overrides=st.lists(st.one_of(st.tuples(override_keys, override_values).map("=".join),
                                    st.text(max_size=25)), max_size=5))
@example(overrides=["train.lr=" + "9" * 400])
@example(overrides=["train.epochs=10", "train.schedule_epochs=200", "train.warmup_epochs=" + "9" * 400])
@example(overrides=["loss.name=focal", "loss.params.drw_start_epoch=5", "train.epochs=4"])
def test_any_overrides_load_or_are_a_config_error(tmp_path: Path, overrides: list[str]) -> None:
    base = ["train.epochs=4", "train.milestones=[3]", "train.warmup_epochs=1"]
    cfg = check(lambda: load_config(None, [*base, *overrides]))
    if cfg is not None:
        assert_round_trip(cfg, tmp_path)


@SETTINGS
@given(chain=st.lists(st.one_of(st.none(), st.integers(0, 3), st.text(max_size=6),
                                st.lists(st.integers(0, 3), max_size=3)), min_size=1, max_size=4))
def test_base_chains_load_or_are_a_config_error(tmp_path: Path, chain: list) -> None:
    """Files whose ``base`` names other files of the set (cycles included), nothing, or junk."""
    def name(i: int) -> str:
        return f"c{i}.yaml"

    for i, base in enumerate(chain):
        entry = (name(base) if isinstance(base, int) else [name(b) for b in base] if isinstance(base, list)
                 else base)
        body = {"train": {"epochs": 4 + i, "milestones": [3], "warmup_epochs": 1}}
        if entry is not None:
            body["base"] = entry
        (tmp_path / name(i)).write_text(yaml.safe_dump(body))
    check(lambda: load_config(tmp_path / name(0)))


def test_a_cycle_is_named() -> None:
    """Hand-checked anchor for the property above: a file that includes itself."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "loop.yaml"
        path.write_text("base: loop.yaml\n")
        try:
            load_config(path)
        except ConfigError as err:
            assert "circular 'base' chain" in str(err)
        else:
            raise AssertionError("a self-including config loaded")
