"""Statistics over repeats and over training seeds.

:func:`summarize`: the mean metric value (accuracy, perplexity, ...) of each (run, faults, preset,
metric, t) cell with its sample standard deviation and Student-t 95% confidence interval over
programmings (independent programmings are i.i.d. draws, so the interval of their mean is the
textbook t interval). That interval is about one trained network.

:func:`summarize_seeds` and :func:`seed_level_test`: a claim about a training method is about every
network it trains, so the unit of those statistics is the training seed. Each seed's network gives
one number, its mean over programmings; the method's value is the mean of those per-seed means, its
95% interval and its tests have n = the number of seeds (a two-stage, "summary statistics" analysis:
each seed's programmings are averaged first, so a method with more programmings per seed does not
get a narrower interval over seeds). The within-network spread over programmings is reported beside it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from analogsam.errors import InvalidParameterError
from analogsam.evaluation.columns import knob_columns
from analogsam.statistics import confidence_interval, sample_std, welch_t_test

SUMMARY_COLUMNS = [
    "run",
    "optimizer",
    "faults",
    "preset",
    "preset_hash",
    "metric",
    "higher_is_better",
    "t_seconds",
    "n",
    "mean",
    "std",
    "ci95_low",
    "ci95_high",
    "digital_value",
    "digital_accuracy",
]

#: The columns of :func:`summarize_seeds` (summary.csv where a run has several training seeds).
SEED_SUMMARY_COLUMNS = [
    "run",
    "optimizer",
    "faults",
    "preset",
    "preset_hash",
    "metric",
    "higher_is_better",
    "t_seconds",
    "n_seeds",
    "train_seeds",
    "n",
    "mean",
    "ci95_low",
    "ci95_high",
    "seed_std",
    "programming_std",
    "digital_value",
    "drop",
    "drop_ci95_low",
    "drop_ci95_high",
    "digital_accuracy",
]

#: The columns of :func:`seed_level_test`.
SEED_TEST_COLUMNS = [
    "run",
    "baseline",
    "optimizer",
    "faults",
    "preset",
    "metric",
    "higher_is_better",
    "t_seconds",
    "quantity",
    "mean",
    "baseline_mean",
    "difference",
    "t",
    "dof",
    "p_value",
    "n_seeds",
    "baseline_n_seeds",
]


def _cell(r: dict) -> tuple:
    return (r["run"], r.get("faults") or "", r["preset"], r["preset_hash"], r["metric"], float(r["t_seconds"]))


def _knobs(row: dict) -> dict:
    """The varied-knob columns of a cell's row (a knob sweep's variant; the same in every row of it)."""
    return {key: row[key] for key in knob_columns([row])}


def _order(item) -> tuple:
    key = item[0]
    return key[0], key[1], key[2], key[4], key[5]


def summarize(rows: Iterable[dict]) -> list[dict]:
    """One row per (run, faults, preset, preset_hash, metric, t): n, mean, sample std and 95% CI of the
    metric's value over repeats, and the digital value. Faulted and clean rows of a run are separate
    cells (rows without a ``faults`` value are clean). The rows of a seed group's networks are pooled (see :func:`summarize_seeds` for statistics over seeds)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[_cell(r)].append(r)
    out = []
    for (run, faults, preset, digest, metric, t), members in sorted(groups.items(), key=_order):
        values = np.array([m["value"] for m in members], dtype=float)
        low, high = confidence_interval(values)
        first = members[0]
        out.append(
            {
                "run": run,
                "optimizer": first.get("optimizer"),
                "faults": faults,
                "preset": preset,
                "preset_hash": digest,
                "metric": metric,
                "higher_is_better": first.get("higher_is_better", True),
                "t_seconds": t,
                "n": len(values),
                "mean": float(values.mean()),
                "std": sample_std(values),
                "ci95_low": low,
                "ci95_high": high,
                "digital_value": first.get("digital_value"),
                "digital_accuracy": first.get("digital_value") if metric == "accuracy" else None,
                **_knobs(first),
            }
        )
    return out


def _seed_order(seed) -> tuple:
    return (seed is not None, seed if seed is not None else 0)


def per_seed(rows: Iterable[dict]) -> dict[tuple, dict]:
    """{(run, faults, preset, preset_hash, metric, t): {train_seed: (values, digital value, first row)}}:
    the programmings of each training seed's network, per cell (``train_seed`` ``None`` for rows
    that record none, one network). Seeds are in increasing order."""
    cells: dict[tuple, dict] = defaultdict(dict)
    for r in rows:
        seeds = cells[_cell(r)]
        values, digital, first = seeds.setdefault(r.get("train_seed"), ([], r.get("digital_value"), r))
        values.append(float(r["value"]))
    return {key: dict(sorted(seeds.items(), key=lambda kv: _seed_order(kv[0]))) for key, seeds in cells.items()}


def _seed_means(seeds: dict) -> np.ndarray:
    """Each training seed's mean over its programmings (``seeds``: a cell of :func:`per_seed`)."""
    return np.array([np.mean(values) for values, _, _ in seeds.values()])


def _seed_drops(seeds: dict, means: np.ndarray) -> np.ndarray:
    """Each seed's drop: how much worse its mean is than its network's digital value, positive for a
    loss (digital - mean where higher is better, mean - digital where lower is; NaN where the digital
    value is unknown). The one sign of a drop in analogsam (:mod:`analogsam.reporting`)."""
    digital = np.array([_nan_if_none(d) for _, d, _ in seeds.values()])
    first = next(iter(seeds.values()))[2]
    return digital - means if first.get("higher_is_better", True) else means - digital


def _nan_if_none(value):
    return math.nan if value is None else float(value)


def summarize_seeds(rows: Iterable[dict]) -> list[dict]:
    """One row per (run, faults, preset, preset_hash, metric, t) with the training seed as the unit.

    Columns (:data:`SEED_SUMMARY_COLUMNS`): ``n_seeds`` and ``train_seeds`` (the seeds, e.g.
    ``"0,1,2"``), ``n`` (programmings of all seeds together), ``mean`` (the mean over seeds of each
    seed's mean over its programmings), ``ci95_low``/``ci95_high`` (the Student-t 95% interval of
    that mean over the seed means, n_seeds - 1 degrees of freedom; NaN with one seed), ``seed_std``
    (the sample std of the seed means; NaN with one seed), ``programming_std`` (the within-network
    spread: the root of the mean of the seeds' sample variances over programmings; NaN where no seed
    has two programmings), ``digital_value`` (the mean over seeds of each network's digital value)
    and ``drop`` (the mean over seeds of how much worse each seed's mean is than its digital value:
    positive for a loss, whichever way the metric points) with its own interval
    ``drop_ci95_low``/``drop_ci95_high``; plus the
    run, optimizer and metric columns of :func:`summarize`.
    """
    out = []
    for (run, faults, preset, digest, metric, t), seeds in sorted(per_seed(rows).items(), key=_order):
        means = _seed_means(seeds)
        variances = [np.var(values, ddof=1) for values, _, _ in seeds.values() if len(values) > 1]
        digitals = [digital for _, digital, _ in seeds.values()]
        low, high = confidence_interval(means)
        known = all(d is not None for d in digitals)
        drops = _seed_drops(seeds, means)
        drop_low, drop_high = confidence_interval(drops) if known else (None, None)
        first = next(iter(seeds.values()))[2]
        digital = float(np.mean(digitals)) if known else None
        out.append(
            {
                "run": run,
                "optimizer": first.get("optimizer"),
                "faults": faults,
                "preset": preset,
                "preset_hash": digest,
                "metric": metric,
                "higher_is_better": first.get("higher_is_better", True),
                "t_seconds": t,
                "n_seeds": len(means),
                "train_seeds": ",".join("" if s is None else str(s) for s in seeds),
                "n": sum(len(values) for values, _, _ in seeds.values()),
                "mean": float(means.mean()),
                "ci95_low": low,
                "ci95_high": high,
                "seed_std": sample_std(means) if len(means) > 1 else math.nan,
                "programming_std": float(math.sqrt(np.mean(variances))) if variances else math.nan,
                "digital_value": digital,
                "drop": float(drops.mean()) if known else None,
                "drop_ci95_low": drop_low,
                "drop_ci95_high": drop_high,
                "digital_accuracy": digital if metric == "accuracy" else None,
                **_knobs(first),
            }
        )
    return out


def seed_level_test(rows: Iterable[dict], baseline: str, *, quantity: str = "value") -> list[dict]:
    """Every run against ``baseline`` (a run name), with the training seed as the unit.

    Per (run != baseline, faults, preset, metric, t) measured for both: the mean over seeds of the
    per-seed means of ``quantity`` (``"value"``: the metric; ``"drop"``: how much worse than the
    network's digital value, positive for a loss), the ``difference`` run - baseline (on drop,
    negative: the run loses less than the baseline), and Welch's two-sided t-test over the
    per-seed numbers (:func:`analogsam.statistics.welch_t_test`: ``t``, ``dof``, ``p_value``; NaN
    unless both have two seeds or more), with ``n_seeds`` of both (:data:`SEED_TEST_COLUMNS`).
    """
    if quantity not in ("value", "drop"):
        raise InvalidParameterError(f"quantity must be 'value' or 'drop', got {quantity!r}")
    rows = list(rows)
    cells = per_seed(rows)

    def numbers(seeds: dict) -> np.ndarray:
        means = _seed_means(seeds)
        return _seed_drops(seeds, means) if quantity == "drop" else means

    runs = sorted({key[0] for key in cells})
    if baseline not in runs:
        raise InvalidParameterError(
            f"baseline {baseline!r} is not a run of these rows ({', '.join(runs)}); pass one of them"
        )
    reference = {(k[1], k[2], k[3], k[4], k[5]): seeds for k, seeds in cells.items() if k[0] == baseline}
    out = []
    for (run, faults, preset, digest, metric, t), seeds in sorted(cells.items(), key=_order):
        base = reference.get((faults, preset, digest, metric, t))
        if run == baseline or base is None:
            continue
        a, b = numbers(seeds), numbers(base)
        stat, dof, p = welch_t_test(a, b)
        first = next(iter(seeds.values()))[2]
        out.append(
            {
                "run": run,
                "baseline": baseline,
                "optimizer": first.get("optimizer"),
                "faults": faults,
                "preset": preset,
                "metric": metric,
                "higher_is_better": first.get("higher_is_better", True),
                "t_seconds": t,
                "quantity": quantity,
                "mean": float(a.mean()),
                "baseline_mean": float(b.mean()),
                "difference": float(a.mean() - b.mean()),
                "t": stat,
                "dof": dof,
                "p_value": p,
                "n_seeds": len(a),
                "baseline_n_seeds": len(b),
            }
        )
    return out
