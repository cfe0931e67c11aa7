"""`analogsam analyze` end to end on digits, and memory faults inside analog evaluation."""

import math

import pytest

from analogsam.cli import main
from analogsam.evaluation import evaluate
from analogsam.evaluation.store import read_rows
from analogsam.robustness.correlation import exact_spearman_p
from analogsam.studies import flatness as A
from analogsam.training import train

QUICK_FLAGS = [
    "--quick",
    "--num-batches",
    "1",
    "--batch-size",
    "64",
    "--repeats",
    "1",
    "--test-samples",
    "128",
    "--time",
    "1d",
    "--preset",
    "pcm",
    "--quiet",
]


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """Three tiny digits MLPs (2 epochs each), so the rank correlation has n = 3."""
    from analogsam.data import load_dataset

    data = load_dataset("digits")
    root = tmp_path_factory.mktemp("analyze-runs")
    settings = {
        "sgd": {"optimizer": "sgd"},
        "sam": {"optimizer": "sam", "rho": 0.05},
        "sgd-lr0.2": {"optimizer": "sgd", "lr": 0.2},
    }
    for name, kwargs in settings.items():
        train("mlp", data, epochs=2, batch_size=64, out=root / name, progress=False, **kwargs)
    return [root / name for name in settings]


@pytest.mark.slow  # trains on digits
def test_analyze_command_end_to_end(three_runs, tmp_path, capsys):
    out = tmp_path / "analyze"
    assert main(["analyze", *map(str, three_runs), "--out", str(out), *QUICK_FLAGS]) == 0
    printed = capsys.readouterr().out
    assert f"wrote report: {out / 'report.md'}" in printed and "Spearman rho" in printed

    names = [r.name for r in three_runs]
    for name in names:
        folder = out / name
        for file in ("analysis.json", "sharpness.csv", "curves.csv", "analog_results.csv"):
            assert (folder / file).stat().st_size > 0, file
        assert (folder / "robustness.png").stat().st_size > 0
        assert len(read_rows(folder / "sharpness.csv")) == len(A.METRICS)
        assert len(read_rows(folder / "analog_results.csv")) == 1  # 1 repeat x 1 time
    for metric in A.METRICS:
        assert (out / f"sharpness_{metric}_vs_accuracy_drop.png").stat().st_size > 0
    assert (out / "robustness.png").stat().st_size > 0

    table = read_rows(out / "table.csv")
    assert [row["run"] for row in table] == names
    for row in table:
        digital, analog, drop = (float(row[k]) for k in ("digital_accuracy", "analog_accuracy", "accuracy_drop"))
        assert drop == pytest.approx(digital - analog)
        assert row["preset"] == "pcm" and float(row["t_seconds"]) == 86400.0
        assert all(math.isfinite(float(row[m])) for m in A.METRICS)

    correlations = read_rows(out / "correlation.csv")
    main_rows = [c for c in correlations if c["drop"] == "accuracy_drop"]
    assert [c["metric"] for c in main_rows] == list(A.METRICS)
    for c in main_rows:
        assert int(c["n"]) == 3
        rho = float(c["spearman_rho"])
        assert -1.0 <= rho <= 1.0 or math.isnan(rho)  # nan only if a column is constant
    assert {c["drop"] for c in correlations} > {"accuracy_drop", "stuck_at_drop@0.05"}

    report = (out / "report.md").read_text()
    assert "Spearman" in report and all(f"| {name} |" in report for name in names)
    assert "sharpness_hessian_trace_vs_accuracy_drop.png" in report


@pytest.mark.slow  # trains on digits
def test_analyze_resumes_and_reruns_on_new_settings(three_runs, tmp_path):
    out = tmp_path / "analyze"
    kwargs = dict(
        quick=True,
        num_batches=1,
        batch_size=64,
        repeats=1,
        test_samples=96,
        progress=False,
        metrics=["average_sharpness"],
        curves=["stuck_at"],
    )
    first = A.analyze_runs(three_runs[:2], out, **kwargs)
    assert first["skipped"] == [] and len(first["analysed"]) == 2
    stamp = (out / "sgd" / "analysis.json").stat().st_mtime_ns

    again = A.analyze_runs(three_runs, out, **kwargs)  # a third run joins; the first two are reused
    assert again["skipped"] == ["sgd", "sam"] and again["analysed"] == ["sgd-lr0.2"]
    assert (out / "sgd" / "analysis.json").stat().st_mtime_ns == stamp
    assert [r["run"] for r in again["table"]] == ["sgd", "sam", "sgd-lr0.2"]
    assert again["records"][0]["metrics"] == first["records"][0]["metrics"]

    other_time = A.analyze_runs(three_runs[:1], out, t="1h", **kwargs)
    assert other_time["analysed"] == ["sgd"]
    assert other_time["records"][0]["analog"]["t_seconds"] == 3600.0


def test_analyze_refuses_bad_input(three_runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        A.analyze_runs([tmp_path], tmp_path / "out")
    with pytest.raises(ValueError, match="one time"):
        A.analyze_runs(three_runs, tmp_path / "out", t="1h,1d")
    with pytest.raises(ValueError, match="unknown analysis options"):
        A.analyze_runs(three_runs, tmp_path / "out", hesian_iters=3)
    assert main(["analyze", str(three_runs[0]), "--out", str(tmp_path / "o"), "--metrics", "flatness"]) == 2


def test_exact_spearman_p_enumerates_permutations():
    # n = 4, a perfect ranking: only the identity and the reversal reach |rho| = 1 among 24 orders.
    assert exact_spearman_p([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(2 / 24)
    assert exact_spearman_p([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(2 / 24)
    assert exact_spearman_p([1, 2, 3], [1, 1, 1]) != exact_spearman_p([1, 2, 3], [1, 1, 1])  # nan


# --- memory faults inside evaluate() -------------------------------------------------------


@pytest.fixture(scope="module")
def test_batches(digits):
    return list(digits.test.batches(512))


@pytest.fixture(scope="module")
def digits_run(three_runs):
    """The best of the tiny runs (about 94% test accuracy)."""
    from analogsam.runs import load_run

    return load_run(three_runs[2])


def _accuracies(rows):
    return [r["accuracy"] for r in rows]


def test_faults_at_rate_zero_change_nothing(digits_run, test_batches):
    # The ideal preset has no device noise, so any difference would come from the faults.
    clean = evaluate(digits_run, test_batches, "ideal", times=[1.0], repeats=2, progress=False)
    zero = evaluate(
        digits_run,
        test_batches,
        "ideal",
        times=[1.0],
        repeats=2,
        progress=False,
        faults={"stuck_at_rate": 0.0, "bit_flip_rate": 0.0, "bits": 8},
    )
    assert _accuracies(zero) == _accuracies(clean)
    assert [r["loss"] for r in zero] == [r["loss"] for r in clean]
    # faults are a column of the rows (the run keeps its plain name), so faulted cells stay apart from clean ones
    assert "stuck_at_rate=0.0" in zero[0]["faults"] and zero[0]["faults"] != clean[0]["faults"]
    assert zero[0]["run"] == clean[0]["run"]


def test_stuck_at_and_bit_flip_faults_lower_analog_accuracy(digits_run, test_batches):
    def mean_acc(faults):
        rows = evaluate(digits_run, test_batches, "ideal", times=[1.0], repeats=2, progress=False, faults=faults)
        return sum(_accuracies(rows)) / len(rows)

    clean = mean_acc(None)
    assert clean > 0.85
    stuck = [mean_acc({"stuck_at_rate": rate}) for rate in (0.2, 1.0)]
    assert clean > stuck[0] > stuck[1]
    assert stuck[1] < 0.35  # every device stuck at 0 or ±w_max: close to chance (0.1)
    flipped = mean_acc({"bit_flip_rate": 0.3, "bits": 8})
    assert flipped < clean - 0.3


def test_faults_and_drift_in_one_evaluation(digits_run, test_batches):
    rows = evaluate(
        digits_run,
        test_batches,
        "pcm",
        times="1s,1d",
        repeats=2,
        progress=False,
        seed=3,
        faults={"stuck_at_rate": 0.05},
    )
    assert len(rows) == 4 and {r["t_seconds"] for r in rows} == {1.0, 86400.0}
    again = evaluate(
        digits_run,
        test_batches,
        "pcm",
        times="1s,1d",
        repeats=2,
        progress=False,
        seed=3,
        faults={"stuck_at_rate": 0.05},
    )
    assert _accuracies(again) == _accuracies(rows)  # fault draws and programming are seeded
    clean = evaluate(digits_run, test_batches, "pcm", times="1s,1d", repeats=2, progress=False, seed=3)
    assert sum(_accuracies(rows)) < sum(_accuracies(clean))
