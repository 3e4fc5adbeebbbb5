"""Self-improvement (Lee et al. 2025): problems, schedules, filters, rounds on the loop, resume."""

import dataclasses

import numpy as np
import pytest

import synthloop
from synthloop.experiment import Experiment
from synthloop.filters import FilterConfig, apply_filter, majority_vote
from synthloop.schedules import ScheduleConfig
from synthloop.tasks.problems import PROBLEMS, accuracy_by_difficulty, make_problem
from synthloop.tasks.self_improve import solved_up_to
from synthloop.validation import ConfigError

TINY = {
    "name": "self-improve", "problem": "copy", "train_max": 3, "train_size": 400, "synthetic_size": 40,
    "eval_max": 5, "eval_size": 8, "layers": 1, "width": 32, "heads": 2, "steps": 40, "round_steps": 10,
    "batch_size": 32, "lr": 3e-3, "warmup": 5, "device": "cpu", "decode_batch": 64,
}


def experiment(generations=1, **task):
    return Experiment.from_dict({"name": "tiny", "generations": generations, "replicates": 1, "workflows": ["accumulate"],
                                 "task": {**TINY, **task}})


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- problems ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", PROBLEMS)
def test_problems_answer_with_the_fixed_length(name):
    problem = make_problem(name, maze_nodes=10)
    rng = np.random.default_rng(0)
    for difficulty in (1, 4, 25 if name != "maze" else 12):
        prompts = problem.sample(difficulty, 20, rng)
        answers = problem.solve_all(prompts)
        assert problem.well_formed(answers, np.full(20, difficulty)).all()
        assert set("".join(prompts)) <= set(problem.alphabet)
        wrong = np.array([problem.corrupt(a, rng) for a in answers], dtype=object)
        assert (wrong != answers).all() and problem.well_formed(wrong, np.full(20, difficulty)).all()


def test_problem_answers():
    assert make_problem("reverse-addition").solve("003+656") == "6590"  # 300 + 656 = 0956, reversed
    assert make_problem("addition").solve("95+17") == "112" and make_problem("addition").solve("10+11") == "021"
    assert make_problem("multiplication").solve("985*689") == "457085"  # 589 · 986 = 580754
    assert make_problem("reverse").solve("123") == "321" and make_problem("copy").solve("123") == "123"
    assert make_problem("maze").solve("ab,cb,bd,de|ae") == "abde"
    assert make_problem("reverse-addition").sample(30, 1, np.random.default_rng(0))[0].count("+") == 1  # beyond int64


def test_maze_paths_follow_edges():
    maze = make_problem("maze", maze_nodes=12)
    for prompt in maze.sample(6, 10, np.random.default_rng(1)):
        edges = {frozenset(e) for e in prompt.split("|")[0].split(",")}
        path = maze.solve(prompt)
        assert len(path) == 7 and path[0] + path[-1] == prompt.split("|")[1]
        assert all(frozenset(path[i : i + 2]) in edges for i in range(6))


def test_accuracy_by_difficulty_and_solved():
    acc = accuracy_by_difficulty(np.array(["1", "2", "3", "x"], dtype=object), np.array(["1", "2", "3", "4"], dtype=object),
                                 np.array([1, 1, 2, 2]), np.array([1, 2, 3]))
    np.testing.assert_array_equal(acc, [1.0, 0.5, np.nan])
    np.testing.assert_array_equal(solved_up_to(np.array([[1, 1, 0.5, 1], [0.9, 1, 1, 1], [1, 1, 1, 1.0]])), [2, 0, 4])


def test_problem_validation():
    with pytest.raises(ValueError, match="problem must be one of"):
        make_problem("sorting")
    with pytest.raises(ValueError, match=r"nodes must be an integer in \[2, 52\]; got 99"):
        make_problem("maze", maze_nodes=99)


# ---- schedules and filters --------------------------------------------------------------

def test_schedules_advance_as_specified():
    accuracy = {5: 1.0, 6: 1.0, 7: 0.995, 8: 0.5, 9: 1.0}
    assert ScheduleConfig(name="standard").difficulties(4, accuracy) == [5]
    assert ScheduleConfig(name="standard").difficulties(7, {}) == [8]
    assert ScheduleConfig(name="accelerated", threshold=0.99).difficulties(4, accuracy) == [5, 6, 7]
    assert ScheduleConfig(name="accelerated", threshold=0.999).difficulties(4, accuracy) == [5, 6]
    assert ScheduleConfig(name="accelerated").difficulties(7, accuracy) == [8]  # never less than standard
    assert ScheduleConfig(name="gate").difficulties(4, accuracy) == [5]
    assert ScheduleConfig(name="gate").difficulties(7, accuracy) == []  # 8 unsolved: hold


def test_majority_vote_keeps_exactly_the_agreed_labels():
    labels = np.array([["12", "7", "55", "ab"], ["12", "8", "55", "ab"], ["13", "9", "54", "ab"]], dtype=object)
    well_formed = np.array([[True, True, True, False]] * 3)
    winner, share = majority_vote(labels)
    assert winner.tolist() == ["12", "7", "55", "ab"]
    filtered = apply_filter(FilterConfig(name="majority", models=3, agreement=0.6), labels, well_formed)
    assert filtered.keep.tolist() == [True, False, True, False]  # "ab" agrees but is malformed
    np.testing.assert_allclose(filtered.agreement, [2 / 3, 1 / 3, 2 / 3, 1])
    assert apply_filter(FilterConfig(name="length"), labels[:1], well_formed[:1]).keep.tolist() == [True, True, True, False]
    assert apply_filter(FilterConfig(name="none"), labels[:1], well_formed[:1]).keep.all()


def test_config_validation_messages():
    with pytest.raises(ConfigError, match=r"task.filter.models must be at least 2 for a majority vote; got 1"):
        experiment(filter={"name": "majority"})
    with pytest.raises(ConfigError, match=r"task.train_min must be at most task.train_max \(3\); got 5"):
        experiment(train_min=5)
    with pytest.raises(ConfigError, match=r"task.eval_max must be at least task.train_max \(3\); got 2"):
        experiment(eval_max=2)
    with pytest.raises(ConfigError, match=r"task.width must be divisible by task.heads \(3\); got 32"):
        experiment(heads=3)
    with pytest.raises(ConfigError, match="task.avalanche_round and task.avalanche_rate go together"):
        experiment(avalanche_round=2)
    with pytest.raises(ConfigError, match=r"task.schedule.name"):
        experiment(schedule={"name": "fast"})
    with pytest.raises(ConfigError, match="verifier cannot filter this task"):
        Experiment.from_dict({**experiment().to_dict(), "verifier": {"name": "random", "keep": 0.5}})


# ---- rounds on the loop -----------------------------------------------------------------

def test_majority_round_keeps_exactly_the_agreed_labels():
    exp = experiment(filter={"name": "majority", "models": 3, "agreement": 0.6}, steps=200, width=48)
    task = exp.build_task()
    from synthloop import seeding
    from synthloop.pool import Mixture, Pool, Source, TrainingSet

    rngs = seeding.replicate_generators(0, 1, "test")
    real = task.sample_real(rngs)
    pool = Pool([Source(0, real, task.real_size)])
    model = task.fit(TrainingSet(pool, Mixture(weights=np.ones(1))), rngs)
    assert len(model.states[0]) == 3
    # label length 3, inside the trained range, where the models are good but not perfect
    data = task.synthesize(dataclasses.replace(model, frontier=np.array([2])), None, 40, rngs)
    # each of the three models labels the same prompts on its own
    votes = np.stack([task.label(task._network(s), data.prompts[0], data.difficulty[0])[0] for s in model.states[0]])
    winner, share = majority_vote(votes)
    formed = np.stack([task.problem.well_formed(v, data.difficulty[0]) for v in votes])
    assert (data.labels[0] == winner).all()
    first = np.argmax(votes == winner[None], axis=0)
    expected = (share >= 0.6) & formed[first, np.arange(40)]
    np.testing.assert_array_equal(data.keep[0], expected)
    assert 0 < expected.sum() < 40, votes  # the test sees both outcomes


def test_avalanche_makes_the_chosen_share_of_labels_wrong():
    run = synthloop.run(experiment(generations=1, avalanche_round=1, avalanche_rate=1.0, filter={"name": "none"}))
    final = run.metrics[run.metrics["generation"] == 1].set_index("metric")["value"]
    assert final["injected"] == final["kept"] == 40 and final["kept_accuracy"] == 0


def test_gate_holds_when_the_next_difficulty_is_unsolved():
    run = synthloop.run(experiment(generations=1, schedule={"name": "gate"}))
    final = run.metrics[run.metrics["generation"] == 1].set_index("metric")["value"]
    first = run.metrics[run.metrics["generation"] == 0].set_index("metric")["value"]
    assert first["accuracy_d4"] < 0.99  # 40 steps do not extend to length 4
    assert final["kept"] == 0 and final["frontier"] == 3
    held = run.generations.query("generation == 1").iloc[0]
    assert held["synthesized"] == 40 and held["kept"] == 0  # in the pool, masked out of training
    assert "label_accuracy" not in final and "synthesized_difficulty" not in final  # nothing labelled


def test_resume_reproduces_the_round(tmp_path):
    straight = synthloop.run(experiment(generations=2))
    synthloop.run(experiment(generations=1), out=tmp_path / "run")
    resumed = synthloop.run(experiment(generations=2), out=tmp_path / "run")
    assert set(resumed.metrics["generation"]) == {0, 1, 2}
    a = straight.metrics.sort_values(["generation", "metric"]).reset_index(drop=True)
    b = resumed.metrics.sort_values(["generation", "metric"]).reset_index(drop=True)
    assert a.drop(columns="value").equals(b.drop(columns="value"))
    np.testing.assert_array_equal(a["value"].to_numpy(), b["value"].to_numpy())
    assert (tmp_path / "run" / "metrics.parquet").exists()


def test_heatmap_is_a_function_of_the_metrics(tmp_path):
    import matplotlib.pyplot as plt
    from typer.testing import CliRunner

    from synthloop.cli import app
    from synthloop.tasks.self_improve import heatmap_figure

    run = synthloop.run(experiment(generations=1), out=tmp_path / "run")
    fig = heatmap_figure(run.metrics, title="tiny")
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (2, 5)  # rounds × difficulties
    plt.close(fig)
    heatmap = tmp_path / "run" / "heatmap.png"
    assert heatmap.stat().st_size > 1000
    # An interrupted run (no results files yet, only checkpoints): the report draws it anew.
    for name in ("heatmap.png", "metrics.parquet", "summary.json"):
        (tmp_path / "run" / name).unlink()
    result = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "interrupted run" in result.output and heatmap.stat().st_size > 1000


def test_heatmap_per_workflow():
    import matplotlib.pyplot as plt
    import pandas as pd

    from synthloop.tasks.self_improve import SelfImproveTask

    rows = [{"replicate": 0, "generation": g, "workflow": w, "metric": f"accuracy_d{d}", "value": 1.0 / d}
            for w in ("accumulate", "gate 0.9") for g in range(3) for d in (1, 2, 3, 4)]
    task = SelfImproveTask(experiment().task)
    figures = task.extra_figures(pd.DataFrame(rows), title="two")
    assert sorted(figures) == ["heatmap-accumulate", "heatmap-gate_0.9"]
    assert figures["heatmap-accumulate"].axes[0].images[0].get_array().shape == (3, 4)
    single = task.extra_figures(pd.DataFrame(rows[:12]), title="one")
    assert list(single) == ["heatmap"]
    for fig in [*figures.values(), *single.values()]:
        plt.close(fig)


def test_core_and_configs_import_without_torch():
    import subprocess
    import sys

    code = ("import sys\n"
            "class NoTorch:\n"  # any `import torch` now fails
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch': raise ImportError('torch blocked')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "import synthloop, synthloop.api, synthloop.cli\n"
            "from synthloop.experiment import load_experiment\n"
            "load_experiment('self-improve-copy-cpu').build_task()\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


SHRINK = ["generations=1", "task.train_size=200", "task.synthetic_size=20", "task.eval_size=4", "task.steps=3",
          "task.round_steps=2", "task.warmup=1", "task.batch_size=8", "task.layers=1", "task.width=16", "task.heads=2",
          "task.device=cpu"]


@pytest.mark.parametrize("preset", sorted(p for p in synthloop.list_presets() if p.startswith("self-improve-")))
def test_every_self_improve_preset_runs_shrunk(preset):
    run = synthloop.run(preset, overrides=SHRINK + ["task.eval_max=" + str(synthloop.load_experiment(preset).task.train_max + 1)])
    assert run.metrics["generation"].max() == 1
    assert np.isfinite(run.metrics.query("metric == 'solved'")["value"]).all()


def test_rope_inf_position_option_builds_the_papers_positions():
    import math

    from synthloop.tasks.self_improve import SelfImproveConfig, SelfImproveTask

    task = SelfImproveTask(SelfImproveConfig(**{k: v for k, v in TINY.items() if k != "name"}, pos="rope-inf"))
    config = task._gpt_config(task._tokenizer())
    assert config.pos == "rope" and config.rope_base == math.inf
    with pytest.raises(ConfigError, match="task.pos"):
        experiment(pos="alibi")
    with pytest.raises(ConfigError, match=r"task.pos 'rope-inf' needs an even head size task.width / task.heads; got 5"):
        experiment(pos="rope-inf", width=10, heads=2)


def test_independent_operand_lengths_for_round_zero_only():
    from synthloop.tasks.self_improve import SelfImproveConfig, SelfImproveTask

    config = {k: v for k, v in TINY.items() if k != "name"} | {"problem": "reverse-addition", "train_max": 6, "eval_max": 7, "train_size": 3000}
    task = SelfImproveTask(SelfImproveConfig(**config, operands="independent"))
    real = task.sample_real([np.random.default_rng(0)])
    problem = make_problem("reverse-addition")
    lengths = np.array([[len(side) for side in p.split("+")] for p in real.prompts[0]])  # (N, 2)
    assert (real.difficulty[0] == lengths.max(axis=1)).all()
    assert (lengths[:, 0] != lengths[:, 1]).mean() > 0.7  # 5/6 of pairs differ when drawn on their own
    assert list(real.labels[0]) == [problem.solve(p) for p in real.prompts[0]]
    assert all(len(a) == problem.answer_length(d) for a, d in zip(real.labels[0], real.difficulty[0]))
    # the test set keeps equal lengths
    assert all(len(set(map(len, p.split("+")))) == 1 for p in real.test.prompts[0])
    with pytest.raises(ConfigError, match="task.operands = 'independent' needs task.problem 'addition' or 'reverse-addition'; got 'copy'"):
        experiment(operands="independent")
