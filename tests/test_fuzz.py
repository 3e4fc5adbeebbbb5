"""Property-based tests: no config text, TOML file, ``--set`` override or ``--grid`` crashes with
anything but a one-line ConfigError (or, on the command line, exit status 2 and no traceback)."""

import os
import tomllib

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from synthloop import ConfigError, Experiment
from synthloop.cli import app
from synthloop.experiment import apply_overrides, load_experiment, parse_key, parse_value
from synthloop.sweep import parse_grid

# More examples for a thorough hunt: SYNTHLOOP_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py
EXAMPLES = int(os.environ.get("SYNTHLOOP_FUZZ_EXAMPLES", "60"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

KEYS = ["task", "task.name", "task.d", "task.T", "task.sigma", "task.design", "workflows", "workflows[0]", "workflows[1].budget",
        "workflows[0].name", "verifier", "verifier.name", "verifier.keep", "generations", "replicates", "seed", "report.metric",
        "report.scale", "guard", "guard[0].metric", "guard[0].max_ratio", "name", "synthloop_format"]
WORDS = ["regression", "gaussian", "kde", "mixture", "logistic", "replace", "accumulate", "oracle", "random", "x.py:Y", "nan",
         "inf", "-inf", "1e999", "true", "excess_risk", ""]

toml_scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.text(max_size=12), st.sampled_from(WORDS),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["name", "d", "keep", "metric", "max", "label", "x"]), inner, max_size=3)),
    max_leaves=8,
)
value_texts = st.one_of(
    st.text(max_size=20), st.sampled_from(WORDS), st.integers().map(str), st.floats().map(repr),
    toml_values.map(lambda v: tomli_w.dumps({"v": v})[4:].strip() if not isinstance(v, float) or v == v else "nan"),
)
key_texts = st.one_of(st.sampled_from(KEYS), st.text(alphabet="abcdefgxyz.[]0123456789_- =", max_size=16), st.text(max_size=12))


def user_error(call):
    """Run ``call``; a ConfigError is fine (it must be non-empty), anything else is a bug."""
    try:
        return call()
    except ConfigError as error:
        assert str(error).strip()
        return None


@FAST
@given(key_texts)
def test_parse_key_returns_parts_or_config_error(key):
    parts = user_error(lambda: parse_key(key))
    if parts is not None:
        assert all(isinstance(p, int) and p >= 0 or isinstance(p, str) and p for p in parts)


@FAST
@given(st.text(max_size=40))
def test_parse_value_never_raises(text):
    parse_value(text)


@FAST
@given(st.lists(st.tuples(key_texts, value_texts).map(lambda kv: f"{kv[0]}={kv[1]}") | st.text(max_size=20), max_size=4))
def test_set_overrides_raise_only_config_errors(items):
    base = Experiment(replicates=2, generations=2).to_dict()
    user_error(lambda: apply_overrides(base, items))
    user_error(lambda: Experiment(replicates=2, generations=2).with_overrides(items))


@FAST
@given(st.dictionaries(st.sampled_from(KEYS), toml_values, max_size=4))
def test_override_mappings_raise_only_config_errors(overrides):
    user_error(lambda: Experiment(replicates=2, generations=2).with_overrides(overrides))


@FAST
@given(st.dictionaries(st.sampled_from(["task", "workflows", "verifier", "generations", "replicates", "seed", "report", "guard", "name", "synthloop_format", "x"]), toml_values, max_size=5))
def test_experiment_tables_raise_only_config_errors(table):
    user_error(lambda: Experiment.from_dict(table))


@FAST
@given(st.one_of(st.text(max_size=80), st.dictionaries(st.sampled_from(KEYS), toml_values, max_size=4).map(
    lambda d: tomli_w.dumps({k.split(".")[0].split("[")[0]: v for k, v in d.items()}) if all(x == x for x in d.values() if isinstance(x, float)) else "")))
def test_toml_files_raise_only_config_errors(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("toml") / "experiment.toml"
    path.write_text(text)
    user_error(lambda: load_experiment(path))


@FAST
@given(st.binary(max_size=60))
def test_binary_toml_files_raise_only_config_errors(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("toml") / "experiment.toml"
    path.write_bytes(data)
    user_error(lambda: load_experiment(path))


@FAST
@given(st.lists(st.tuples(key_texts, st.lists(value_texts, max_size=3)).map(lambda kv: f"{kv[0]}={','.join(kv[1])}") | st.text(max_size=20), max_size=3))
def test_grid_arguments_raise_only_config_errors(items):
    user_error(lambda: parse_grid(items))


@settings(max_examples=max(EXAMPLES // 3, 1), deadline=None)
@given(st.lists(st.tuples(key_texts, value_texts).map(lambda kv: f"{kv[0]}={kv[1]}"), min_size=1, max_size=2))
def test_cli_set_is_a_clear_line_or_a_config(items):
    result = CliRunner().invoke(app, ["config", "regression-workflows", *(a for item in items for a in ("--set", item))])
    assert result.exit_code in (0, 2), (items, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.output.startswith("error: ")
    else:
        assert tomllib.loads(result.output)  # the resolved config is valid TOML


@pytest.mark.parametrize("text", ["generations = 1e999", "[task]\nd = inf", "[task]\nd = nan", "seed = -1", "[task]\nname = 3", "workflows = [[]]", "guard = [{}]", "synthloop_format = 'x'"])
def test_examples_found_by_fuzzing_are_config_errors(tmp_path, text):
    path = tmp_path / "experiment.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_experiment(path)
