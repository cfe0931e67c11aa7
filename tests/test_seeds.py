"""Training seeds as an axis: seed groups (train, reuse, load), their rows, their programming seeds,
statistics over seeds (summarize_seeds, seed_level_test, Welch's test) and reports over seeds."""

import math

import numpy as np
import pytest
from scipy import stats

from analogsam import runs, training
from analogsam.cli import main
from analogsam.errors import InvalidParameterError
from analogsam.evaluation import derive_seed, evaluate, sweep
from analogsam.evaluation.report import markdown_table, summary_of, text_table
from analogsam.evaluation.runs import load_runs
from analogsam.evaluation.statistics import seed_level_test, summarize, summarize_seeds
from analogsam.evaluation.store import ResultStore, read_rows
from analogsam.statistics import welch_t_test

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(optimizer="sgd", epochs=1, batch_size=64, progress=False)


@pytest.fixture(scope="module")
def group(digits, tmp_path_factory):
    """A seed group of two tiny MLPs (seeds 0 and 1) in <tmp>/sgd."""
    return training.train_seeds("mlp", digits, seeds=[0, 1], out=tmp_path_factory.mktemp("groups") / "sgd", **TINY)


def _batches(digits, n=120):
    return [(digits.test.x[:n], digits.test.y[:n])]


@pytest.mark.slow  # trains on digits
def test_train_seeds_writes_one_run_per_seed_and_reuses_finished_ones(digits, tmp_path, monkeypatch):
    first = training.train_seeds("mlp", digits, seeds=[0, 1], out=tmp_path / "sam-ish", **TINY)
    assert [(r.name, r.train_seed, r.group) for r in first] == [("sam-ish", 0, "sam-ish"), ("sam-ish", 1, "sam-ish")]
    assert [r.path.name for r in first] == ["seed-0", "seed-1"]
    assert first[0].metrics != first[1].metrics  # two networks, not one trained twice

    trained = []
    real_train = training.train
    monkeypatch.setattr(training, "train", lambda **kw: trained.append(kw["seed"]) or real_train(**kw))
    again = training.train_seeds("mlp", digits, seeds=[0, 1], out=tmp_path / "sam-ish", **TINY)
    assert trained == [] and [r.metrics for r in again] == [r.metrics for r in first]
    extended = training.train_seeds("mlp", digits, seeds=[0, 1, 2], out=tmp_path / "sam-ish", **TINY)
    assert trained == [2] and [r.train_seed for r in extended] == [0, 1, 2]
    training.train_seeds("mlp", digits, seeds=[0, 1], out=tmp_path / "sam-ish", **{**TINY, "epochs": 2})
    assert trained == [2, 0, 1]  # other settings: every seed is trained again


@pytest.mark.parametrize("seeds", [[], [0, 0], [-1], "0,x", 3])
def test_train_seeds_refuses_bad_seeds(digits, tmp_path, seeds):
    with pytest.raises(InvalidParameterError, match="seed"):
        training.train_seeds("mlp", digits, seeds=seeds, out=tmp_path / "g", **TINY)


def test_train_seeds_takes_seeds_not_seed(digits, tmp_path):
    with pytest.raises(InvalidParameterError, match="seeds="):
        training.train_seeds("mlp", digits, seeds=[0], seed=1, out=tmp_path / "g", **TINY)


def test_load_group_and_load_runs(group, digits_run, tmp_path):
    folder = group[0].path.parent
    assert runs.is_seed_group(folder) and not runs.is_seed_group(group[0].path)
    loaded = runs.load_group(folder)
    assert [(r.name, r.train_seed, r.group) for r in loaded] == [("sgd", 0, "sgd"), ("sgd", 1, "sgd")]
    assert runs.load_group(digits_run.path)[0].group is None  # a single run folder: itself
    with pytest.raises(runs.RunNotFoundError, match="is a seed group"):
        runs.load_run(folder)
    assert [r.train_seed for r in load_runs([folder])] == [0, 1]
    with pytest.raises(InvalidParameterError, match="share a training seed"):
        load_runs([folder, folder])
    with pytest.raises(InvalidParameterError, match="share the name 'sgd'"):
        load_runs([folder, digits_run])  # a single run named like the group would share its cells


def test_a_seed_folder_holding_another_seed_is_refused(group, tmp_path):
    import shutil

    shutil.copytree(group[1].path, tmp_path / "g" / "seed-5")
    with pytest.raises(runs.CheckpointError, match="seed 1, not 5"):
        runs.load_group(tmp_path / "g")


def test_a_group_of_two_methods_is_refused(group, digits, tmp_path):
    import shutil

    shutil.copytree(group[0].path, tmp_path / "g" / "seed-0")
    training.train("mlp", digits, seed=1, out=tmp_path / "g" / "seed-1", **{**TINY, "optimizer": "sam"})
    with pytest.raises(runs.CheckpointError, match="mixes optimizers"):
        runs.load_group(tmp_path / "g")


def test_rows_carry_the_training_seed_and_group_seeds_include_it(group, digits_run, digits):
    single = evaluate(digits_run, _batches(digits), "pcm", times="1s", repeats=2, seed=3, progress=False)
    assert [r["seed"] for r in single] == [derive_seed(3, "sgd", "", "pcm", k) for k in range(2)]
    assert {(r["train_seed"], r["seed_group"]) for r in single} == {(0, False)}
    rows = [evaluate(run, _batches(digits), "pcm", times="1s", repeats=2, seed=3, progress=False) for run in group]
    assert [[r["train_seed"] for r in rs] for rs in rows] == [[0, 0], [1, 1]]
    assert [r["seed"] for r in rows[1]] == [derive_seed(3, "sgd", "", "pcm", k, "train_seed", 1) for k in range(2)]
    seeds = [r["seed"] for rs in rows for r in rs] + [r["seed"] for r in single]
    assert len(set(seeds)) == 6  # no two networks of the group share a noise draw, nor the single run's
    module = evaluate(digits_run.model, _batches(digits), "pcm", times="1s", repeats=1, progress=False)
    assert module[0]["train_seed"] is None and module[0]["seed_group"] is False


def test_a_group_sweep_resumes_per_seed(group, digits, tmp_path):
    kwargs = dict(batches_for=lambda r: _batches(digits), times="1s,1d", seed=0, out=tmp_path, progress=False)
    rows = sweep([group[0]], ["pcm"], repeats=2, **kwargs)
    assert len(rows) == 4
    rows = sweep(group, ["pcm"], repeats=2, **kwargs)  # seed 0 is finished: only seed 1 is measured
    assert sorted((r["train_seed"], r["repeat"]) for r in rows if r["t_seconds"] == 1.0) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]
    assert len(ResultStore(tmp_path).done) == 4
    back = read_rows(tmp_path / "results.csv")
    assert {(r["train_seed"], r["seed_group"]) for r in back} == {(0, True), (1, True)}
    assert len(sweep(group, ["pcm"], repeats=2, **kwargs)) == 8  # nothing new


def _synthetic():
    """Two runs x seeds x programmings at one time, with known numbers (digital 0.9 and 0.8)."""
    values = {
        ("a", 0): [0.80, 0.82, 0.84],
        ("a", 1): [0.70, 0.72],
        ("a", 2): [0.90, 0.86],
        ("b", 0): [0.60, 0.64],
        ("b", 1): [0.66, 0.70],
    }
    digital = {("a", 0): 0.90, ("a", 1): 0.80, ("a", 2): 0.95, ("b", 0): 0.70, ("b", 1): 0.75}
    return (
        [
            {
                "run": run,
                "optimizer": run,
                "train_seed": seed,
                "faults": "",
                "preset": "pcm",
                "preset_hash": "h",
                "metric": "accuracy",
                "higher_is_better": True,
                "t_seconds": 1.0,
                "repeat": k,
                "value": v,
                "digital_value": digital[(run, seed)],
            }
            for (run, seed), vs in values.items()
            for k, v in enumerate(vs)
        ],
        values,
        digital,
    )


def test_summarize_seeds_against_a_hand_computation():
    rows, values, digital = _synthetic()
    a, b = summarize_seeds(rows)
    means = [np.mean(values[("a", s)]) for s in (0, 1, 2)]  # 0.82, 0.71, 0.88
    assert a["n_seeds"] == 3 and a["n"] == 7 and a["train_seeds"] == "0,1,2"
    assert a["mean"] == pytest.approx(sum(means) / 3)
    half = stats.t.ppf(0.975, 2) * np.std(means, ddof=1) / math.sqrt(3)
    assert (a["ci95_low"], a["ci95_high"]) == pytest.approx((a["mean"] - half, a["mean"] + half))
    assert a["seed_std"] == pytest.approx(np.std(means, ddof=1))
    variances = [np.var(values[("a", s)], ddof=1) for s in (0, 1, 2)]  # 4e-4, 2e-4, 8e-4
    assert a["programming_std"] == pytest.approx(math.sqrt(sum(variances) / 3))
    assert a["digital_value"] == pytest.approx((0.90 + 0.80 + 0.95) / 3)
    drops = [digital[("a", s)] - m for s, m in enumerate(means)]  # 0.08, 0.09, 0.07: a loss is positive
    assert a["drop"] == pytest.approx(0.08)
    drop_half = stats.t.ppf(0.975, 2) * np.std(drops, ddof=1) / math.sqrt(3)
    assert (a["drop_ci95_low"], a["drop_ci95_high"]) == pytest.approx((0.08 - drop_half, 0.08 + drop_half))
    assert b["n_seeds"] == 2 and b["mean"] == pytest.approx((0.62 + 0.68) / 2)
    one = summarize_seeds([r for r in rows if r["train_seed"] == 0])
    assert one[0]["n_seeds"] == 1 and math.isnan(one[0]["ci95_low"]) and math.isnan(one[0]["seed_std"])


def test_a_drop_is_a_loss_whichever_way_the_metric_points():
    """The one sign of a drop (analogsam.reporting): positive is a loss, for a lower-is-better metric too."""
    rows, _, _ = _synthetic()
    # cross-entropy: the analog values (0.80-0.90) above a digital loss of 0.5 are worse than digital
    lower = [{**r, "metric": "cross_entropy", "higher_is_better": False, "digital_value": 0.5} for r in rows]
    a = summarize_seeds(lower)[0]
    assert a["drop"] == pytest.approx(a["mean"] - 0.5) and a["drop"] > 0


def test_seed_level_test_is_welchs_test_over_the_seed_means():
    rows, values, digital = _synthetic()
    (test,) = seed_level_test(rows, "b")
    a = [np.mean(values[("a", s)]) for s in (0, 1, 2)]
    b = [np.mean(values[("b", s)]) for s in (0, 1)]
    expected = stats.ttest_ind(a, b, equal_var=False)
    assert (test["run"], test["baseline"], test["n_seeds"], test["baseline_n_seeds"]) == ("a", "b", 3, 2)
    assert test["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    assert (test["t"], test["p_value"]) == pytest.approx((expected.statistic, expected.pvalue))
    (drop,) = seed_level_test(rows, "b", quantity="drop")
    drops_a = [digital[("a", s)] - m for s, m in enumerate(a)]
    drops_b = [digital[("b", s)] - m for s, m in enumerate(b)]
    assert drop["difference"] == pytest.approx(np.mean(drops_a) - np.mean(drops_b))  # 0.08 - 0.075: a loses more
    assert drop["p_value"] == pytest.approx(stats.ttest_ind(drops_a, drops_b, equal_var=False).pvalue)
    with pytest.raises(InvalidParameterError, match="baseline 'sgd'"):
        seed_level_test(rows, "sgd")
    with pytest.raises(InvalidParameterError, match="quantity"):
        seed_level_test(rows, "b", quantity="spread")


def test_welch_t_test_textbook_numbers():
    # Example 1 of Wikipedia's "Welch's t-test" article: t = -2.46, 24.9 degrees of freedom, p = 0.021.
    a, b = (
        [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4],
        [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4],
    )
    t, dof, p = welch_t_test(a, b)
    va, vb = np.var(a, ddof=1) / 15, np.var(b, ddof=1) / 15
    assert t == pytest.approx((np.mean(a) - np.mean(b)) / math.sqrt(va + vb))
    assert dof == pytest.approx((va + vb) ** 2 / (va**2 / 14 + vb**2 / 14))
    assert t == pytest.approx(-2.46, abs=0.005) and dof == pytest.approx(24.9, abs=0.1)
    assert p == pytest.approx(0.021, abs=0.0005)
    assert all(math.isnan(x) for x in welch_t_test([1.0], [2.0, 3.0]))


def test_reports_over_seeds_show_the_interval_and_the_programming_spread():
    rows, _, _ = _synthetic()
    assert summary_of(rows)[0]["n_seeds"] == 3
    single = [r for r in rows if r["train_seed"] == 0]
    assert summary_of(single) == summarize(single)  # one seed per run: the summary reports always had
    summary = summary_of([*rows, *[{**r, "run": "c", "train_seed": 0} for r in single]])
    table = markdown_table(summary, "pcm")
    assert "| run | optimizer | seeds | digital | 1s |" in table
    (a_line,) = [line for line in table.splitlines() if line.startswith("| a ")]
    assert "**80.33 ±" in a_line and "(σp 2.16)" in a_line  # the best seed-level mean is in bold
    assert "(1 seed, no CI)" in table  # run c has one seed: no interval over seeds
    drops = markdown_table(summary, "pcm", quantity="drop")
    assert "| 8.00 ±" in drops and "**7.50 ±" in drops  # a loss is positive; the smallest drop (b's) in bold
    assert "95% CI over 1-3 training seeds" in text_table(summary, "pcm")


@pytest.mark.slow  # trains seed groups on digits
def test_cli_trains_seed_groups_and_compares_them(tmp_path, capsys):
    common = [
        "--data",
        "digits",
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--train-limit",
        "300",
        "--test-limit",
        "100",
        "--quiet",
    ]
    for name in ("sgd", "sam"):
        assert main(["train", *common, "--optimizer", name, "--seeds", "0,1", "--out", str(tmp_path / name)]) == 0
    checkpoint = tmp_path / "sgd" / "seed-1" / "checkpoint.pt"
    written = checkpoint.stat().st_mtime_ns
    assert main(["train", *common, "--optimizer", "sgd", "--seeds", "0,1", "--out", str(tmp_path / "sgd")]) == 0
    assert checkpoint.stat().st_mtime_ns == written  # reused, not trained again
    assert "seed 1: test accuracy" in capsys.readouterr().out
    assert (
        main(
            [
                "compare",
                str(tmp_path / "sgd"),
                str(tmp_path / "sam"),
                "--presets",
                "pcm",
                "--times",
                "1s,1d",
                "--repeats",
                "2",
                "--out",
                str(tmp_path / "cmp"),
                "--quiet",
            ]
        )
        == 0
    )
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "95% Student-t confidence interval over seeds" in report and "Drop from the digital accuracy" in report
    assert "| sgd | sgd | 2 |" in report and "σp" in report
    summary = read_rows(tmp_path / "cmp" / "summary.csv")
    assert {(r["run"], r["n_seeds"], r["n"]) for r in summary} == {("sgd", 2, 4), ("sam", 2, 4)}
    assert all(isinstance(r["drop"], float) and isinstance(r["seed_std"], float) for r in summary)
    assert {r["train_seed"] for r in read_rows(tmp_path / "cmp" / "results.csv")} == {0, 1}
    assert (tmp_path / "cmp" / "accuracy_vs_time_pcm.png").exists()


def test_cli_refuses_bad_seeds(tmp_path, capsys):
    assert main(["train", "--data", "digits", "--model", "mlp", "--seeds", "0,0", "--out", str(tmp_path / "g")]) == 2
    assert "seeds lists a training seed twice" in capsys.readouterr().err
