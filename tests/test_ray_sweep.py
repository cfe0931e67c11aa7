"""Sweeps on Ray: a small comparison on a local Ray with 2 CPUs gives the serial sweep's rows, resumes
by submitting only the missing cells, and without Ray installed says how to install it.

One local Ray serves the whole module (started once, shut down at the end); the sweeps find it
initialised and use it. The tests that need Ray skip where it is not installed.
"""

import logging
import os
import sys

import pytest

from analogsam.cli import main
from analogsam.errors import InvalidParameterError
from analogsam.evaluation import protocol, sweep
from analogsam.evaluation.ray_sweep import RayUnavailableError
from analogsam.evaluation.store import RESULT_COLUMNS, ResultStore, read_rows

pytestmark = pytest.mark.slow  # starts Ray

SETTINGS = dict(presets=["pcm"], times="1s,1d", repeats=3)


def _cell_order(row):
    return row["run"], row["repeat"], row["t_seconds"]


def _rows(rows):
    """Every column of every row (there are no timing columns), in one order."""
    return [{c: r[c] for c in RESULT_COLUMNS} for r in sorted(rows, key=_cell_order)]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs for this module: no dashboard, no usage statistics, workers' output
    kept out of the test log, never an older Ray found under /tmp/ray (``address="local"``)."""
    ray = pytest.importorskip("ray")
    saved = os.environ.get("RAY_USAGE_STATS_ENABLED")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        object_store_memory=100 * 2**20,
    )  # the runs and batches are tiny
    yield ray
    ray.shutdown()
    if saved is None:
        os.environ.pop("RAY_USAGE_STATS_ENABLED")
    else:
        os.environ["RAY_USAGE_STATS_ENABLED"] = saved


@pytest.fixture(scope="module")
def tiny_runs(digits, tmp_path_factory):
    """Two MLPs trained on digits for one epoch, with SGD and with SAM, as run folders."""
    from analogsam.training import train

    root = tmp_path_factory.mktemp("ray-runs")
    return [
        train("mlp", digits, optimizer=name, epochs=1, batch_size=64, lr=0.05, seed=0, out=root / name, progress=False)
        for name in ("sgd", "sam")
    ]


@pytest.fixture(scope="module")
def serial_rows(tiny_runs):
    """The serial sweep the Ray sweeps must reproduce (each run's whole digits test split)."""
    return sweep(tiny_runs, progress=False, **SETTINGS)


def test_rows_on_ray_equal_the_serial_sweep(local_ray, tiny_runs, serial_rows, tmp_path):
    assert local_ray.cluster_resources()["CPU"] == 2
    rows = sweep(tiny_runs, ray=True, out=tmp_path, progress=False, **SETTINGS)
    assert len(rows) == 2 * 3 * 2  # runs x repeats x times
    assert _rows(rows) == _rows(serial_rows)
    assert _rows(read_rows(tmp_path / "results.csv")) == _rows(serial_rows)  # the driver wrote every cell


def test_a_resumed_sweep_submits_only_the_missing_cells(local_ray, tiny_runs, serial_rows, tmp_path, monkeypatch):
    sweep(tiny_runs, out=tmp_path, progress=False, **{**SETTINGS, "repeats": 1})  # repeat 0 of each run is done
    before = (tmp_path / "results.csv").read_text()
    submitted, real = [], protocol.run_tasks

    def spy(fn, tasks, **kwargs):  # a task: (run, batches, preset, times, repeats, its repeats, settings)
        tasks = list(tasks)
        submitted.extend((task[0].name, task[2].name, k) for task in tasks for k in task[5])
        return real(fn, tasks, **kwargs)

    monkeypatch.setattr(protocol, "run_tasks", spy)
    rows = sweep(tiny_runs, ray=True, out=tmp_path, progress=False, **SETTINGS)
    assert sorted(submitted) == [(run, "pcm", k) for run in ("sam", "sgd") for k in (1, 2)]
    assert (tmp_path / "results.csv").read_text().startswith(before)  # finished cells are kept as they were
    assert _rows(rows) == _rows(serial_rows)
    submitted.clear()
    assert _rows(sweep(tiny_runs, ray=True, out=tmp_path, progress=False, **SETTINGS)) == _rows(serial_rows)
    assert submitted == []  # nothing left to measure: nothing submitted


def test_compare_with_ray_on_the_command_line(local_ray, tiny_runs, serial_rows, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            str(tiny_runs[0].path),
            str(tiny_runs[1].path),
            "--presets",
            "pcm",
            "--times",
            "1s,1d",
            "--repeats",
            "3",
            "--ray",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr()
    assert f"wrote results: {out / 'results.csv'}" in printed.out
    assert "sweep (Ray): 6/6 cells" in printed.err  # progress counted in cells (a line at a time: no terminal here)
    assert _rows(ResultStore(out).rows) == _rows(serial_rows)


def test_without_ray_installed_the_flag_says_how_to_install_it(tiny_runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(RayUnavailableError, match=r"pip install 'analogsam\[ray\]'"):
        sweep(tiny_runs, ray=True, progress=False, **SETTINGS)
    code = main(["compare", str(tiny_runs[0].path), "--ray", "--out", str(tmp_path / "cmp"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: ") and "pip install 'analogsam[ray]'" in err
    assert not (tmp_path / "cmp").exists()  # refused before anything was made


@pytest.mark.parametrize(
    "ray, workers, match",
    [(5, 1, "ray must be None, True"), ("", 1, "ray must be None"), ("HEAD:6379", 2, "workers=2 sizes a local Ray")],
)
def test_bad_ray_settings_are_refused(tiny_runs, ray, workers, match):
    with pytest.raises(InvalidParameterError, match=match):
        sweep(tiny_runs, ray=ray, workers=workers, progress=False, **SETTINGS)


def test_a_mistake_found_on_a_worker_reads_as_it_would_here(local_ray, tiny_runs):
    def refusing_metric(predictions, targets):  # pickled by value: Ray's workers cannot import this module
        raise InvalidParameterError("this metric refuses every batch: pass another metric")

    with pytest.raises(InvalidParameterError, match="^this metric refuses every batch") as caught:
        sweep(tiny_runs[:1], presets=["pcm"], times="1s", repeats=2, ray=True, metric=refusing_metric, progress=False)
    assert not isinstance(caught.value, local_ray.exceptions.RayTaskError)  # the worker's error itself, one line
