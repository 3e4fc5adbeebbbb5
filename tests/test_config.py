"""Every invalid config fails before any work, with one line naming the key."""

import pytest

import synthloop
from synthloop import ConfigError
from synthloop.experiment import load_experiment


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["generations=-1"], r"^generations must be an integer in \[0, 10000\]; got -1$"),
        (["replicates=-3"], r"^replicates must be an integer in \[1, 1000000\]; got -3$"),
        (["generations=2.5"], r"^generations must be an integer in \[0, 10000\]; got 2.5$"),
        (["seed=true"], r"^seed must be an integer in \[0, \d+\]; got True$"),
        (["task.sigma=-1"], r"^task.sigma must be a number ≥ 0; got -1$"),
        (["task.d=0"], r"^task.d must be an integer in \[1, 100000\]; got 0$"),
        (["task.design=rotated"], r"^task.design must be one of 'fixed' or 'random'; got 'rotated'$"),
        (["task.dimension=3"], r"^task.dimension is not a known key; known keys: T, T0, beta, d, design"),
        (["generation=3"], r"^generation is not a known key; known keys: description, generations"),
        (["task.name=lasso"], r"^task.name must be one of \[.*'regression'.*\] or 'file.py:ClassName'; got 'lasso'$"),
        (["task.name=missing.py:Foo"], r"^task.name refers to .*missing.py, which does not exist$"),
        (["workflows=replace,discard"], r"^workflows\[1\].name must be one of 'replace', 'accumulate', 'accumulate-subsample', 'growing', 'weighted', .*; got 'discard'$"),
        (["workflows=[]"], r"^workflows: list should have at least 1 item"),
        (["workflows[2].budget=0"], r"^workflows\[2\].budget must be an integer in \[1, 1000000000\]; got 0$"),
        (["workflows[2].budget=500"], r"^workflows\[2\].budget must be an integer in \[1, 100\] \(at most the real data's size"),
        (["workflows=replace,replace"], r"^workflows\[1\] repeats the workflow 'replace'; give it a distinct label$"),
        (["workflows=growing"], r"^workflows\[0\] \('growing'\) synthesizes up to 5000 rows per generation, but task.design='fixed' relabels"),
        (["task.T0=50"], r"^task.T0 must equal T=100 under design='fixed'"),
        (["report.metric=accuracy"], r"^report.metric must be one of \['excess_risk'\]; got 'accumulate'|^report.metric must be one of \['excess_risk'\]; got 'accuracy'$"),
        (["report.scale=loglog"], r"^report.scale must be one of 'both', 'linear' or 'log'; got 'loglog'$"),
        (["task.d"], r"^--set expects key=value; got 'task.d'$"),
        (['workflows=[{name="replace", label="../x"}]'], r"^workflows\[0\].label must match the pattern .*; got '../x'$"),
        (["workflows[7].budget=3"], r"^workflows\[7\] does not exist"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment("regression-workflows", overrides)


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match=r"'nope' is neither a preset nor a file; presets: .*regression-workflows"):
        load_experiment("nope")


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("generations = = 3\n")
    with pytest.raises(ConfigError, match=r"bad.toml: invalid TOML"):
        load_experiment(path)


def test_bad_value_in_file_names_the_key(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text("[task]\nT = 0\n")
    with pytest.raises(ConfigError, match=r"^task.T must be an integer in \[1, 10000000\]; got 0$"):
        load_experiment(path)


def test_python_construction_validates_too():
    with pytest.raises(ConfigError, match=r"task.sigma must be a number ≥ 0; got -0.5"):
        synthloop.Experiment.from_dict({"task": {"sigma": -0.5}})


def test_overrides_parse_toml_values_and_reach_defaults():
    experiment = load_experiment("regression-workflows", ["task.sigma=0.5", "workflows[2].budget=40", "task.design=random"])
    assert experiment.task.sigma == 0.5
    assert experiment.task.design == "random"
    assert experiment.workflows[2].budget == 40
    assert experiment.generations == 50  # from the preset


def test_resolved_config_round_trips():
    experiment = load_experiment("regression-workflows", ["task.T0=100"])
    again = synthloop.Experiment.from_dict(__import__("tomllib").loads(experiment.to_toml()))
    assert again == experiment


def test_presets_are_valid_and_described():
    presets = synthloop.list_presets()
    assert "regression-workflows" in presets
    for name, description in presets.items():
        assert description, name
        load_experiment(name)
