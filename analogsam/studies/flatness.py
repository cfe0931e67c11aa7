"""The ``analogsam analyze`` study: does flatness predict robustness, over trained run folders?

:func:`analyze_runs` measures per run folder every sharpness metric and robustness curve
(:func:`analogsam.robustness.analyze_model`) and the analog accuracy drop at a preset and time
(:func:`analogsam.evaluation.evaluate`), and across runs writes a table, the rank correlations
(:mod:`analogsam.robustness.correlation`), scatters and curves (:mod:`analogsam.robustness.plots`)
and a markdown report. It is resumable run by run: each run's record holds a hash of every setting
and of the checkpoint (:func:`analogsam.storage.matching_record`), so a rerun skips the runs already
analysed with the same settings.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from analogsam.errors import AnalogsamError, InvalidParameterError
from analogsam.optim.hyperparameters import METHODS, SCOPE
from analogsam.reporting import markdown_lines, value_text
from analogsam.robustness import analyze_model
from analogsam.robustness.correlation import exact_spearman_p, paired, robustness_correlation
from analogsam.robustness.plots import plot_robustness_panel, plot_sharpness_scatters
from analogsam.robustness.probes import CURVES, METRICS, probe_settings
from analogsam.storage import (
    ensure_folder,
    file_digest,
    jsonable,
    matching_record,
    safe_name,
    settings_hash,
    write_json,
)
from analogsam.validation import Boolean, Interval, OrNone, Subset, declare

__all__ = ["CURVES", "METRICS", "QUICK_SETTINGS", "RunFolderError", "analyze_runs"]


class RunFolderError(AnalogsamError, FileNotFoundError):
    """A folder given as a trained run holds no checkpoint."""


# --- run folders: the `analogsam analyze` study ------------------------------------------------

#: ``analyze_model`` settings of ``quick=True``: fewer ascent steps, draws and levels (minutes → seconds).
QUICK_SETTINGS = {
    "ascent_steps": 3,
    "sharpness_draws": 5,
    "hessian_iters": 8,
    "trace_draws": 5,
    "relative_etas": (0.0, 0.1, 0.3, 0.5),
    "additive_etas": (0.0, 0.05, 0.1),
    "noise_draws": 3,
    "stuck_at_rates": (0.0, 0.01, 0.05),
    "bit_flip_rates": (0.0, 1e-3, 1e-2),
    "fault_draws": 2,
}
#: Options of ``analyze_runs`` that go to ``analyze_model`` as they are (the others fill its settings objects).
_MODEL_OPTIONS = ("metric", "output_fn", "loss_fn")
RUN_RECORD = "analysis.json"
TABLE_FILE = "table.csv"
CORRELATION_FILE = "correlation.csv"
REPORT_FILE = "report.md"
_TEST_BATCH = 2000


def adaptive_scope_for(run, default: str = SCOPE.default) -> str:
    """The scope of the ``adaptive_sharpness`` metric for ``run``: the run's own ``scope`` when it was
    trained with a method that has one (ASAM, SAMSON: T = |w| + η; runs from before the scope existed
    were trained with the default), so the metric measures what that optimizer minimised; ``default``
    for every other method."""
    method = METHODS.get(run.optimizer)
    if method is not None and any(hp.name == SCOPE.name for hp in method.hyperparameters):
        return run.config.get("optimizer_hparams", {}).get("scope", SCOPE.default)
    return default


def _dataset_cache_key(config: Mapping, data_root) -> str:
    """Runs trained on the same data share one loaded dataset."""
    return settings_hash(
        {"dataset": config.get("dataset"), "data_options": config.get("data_options", {}), "root": str(data_root)}
    )


def _curve_rows(record: Mapping) -> list[dict]:
    rows = []
    for name, curve in record.get("curves", {}).items():
        for row in curve["summary"]:
            rows.append(
                {
                    "run": record["run"],
                    "curve": name,
                    "kind": curve["kind"],
                    "level_name": curve["level_name"],
                    "level": row[curve["level_name"]],
                    **{k: row[k] for k in ("n", "mean", "std", "min", "max", "mean_drop")},
                    "clean_accuracy": curve["clean_accuracy"],
                }
            )
    return rows


def _write_run_files(record: Mapping, folder: Path, analog_rows: list[dict]) -> dict:
    """Per-run CSVs and PNGs beside ``analysis.json``; returns their paths."""
    from analogsam.evaluation.store import RESULT_COLUMNS, write_rows

    ensure_folder(folder)
    paths = {}
    sharp = [
        {
            "metric": m,
            "value": r["value"],
            "stderr": r["stderr"],
            "num_batches": r["settings"].get("num_batches"),
            "n_samples": r["settings"].get("n_samples"),
        }
        for m, r in record.get("sharpness", {}).items()
    ]
    if sharp:
        paths["sharpness"] = folder / "sharpness.csv"
        write_rows(paths["sharpness"], sharp, ["metric", "value", "stderr", "num_batches", "n_samples"])
    curve_rows = _curve_rows(record)
    if curve_rows:
        paths["curves"] = folder / "curves.csv"
        write_rows(paths["curves"], curve_rows, list(curve_rows[0]))
    if analog_rows:
        paths["analog"] = folder / "analog_results.csv"
        write_rows(paths["analog"], analog_rows, RESULT_COLUMNS)
    if record.get("curves"):
        paths["robustness_plot"] = plot_robustness_panel(
            {name: {record["run"]: curve} for name, curve in record["curves"].items()},
            folder / "robustness.png",
            title=f"{record['run']}: accuracy under weight noise and faults",
        )
    return paths


def _analyze_one(
    run,
    train_batches,
    test_batches,
    preset,
    t,
    *,
    repeats,
    seed,
    backend,
    metrics,
    curves,
    options,
    progress,
    label,
    device,
    evaluation_device,
) -> tuple[dict, list[dict]]:
    """Sharpness on training batches, curves on test batches, analog accuracy at (preset, t); the
    probes run on a copy of the model on ``device`` (their draws come from CPU generators, then
    move: the same numbers up to float32 rounding), the evaluation on ``evaluation_device`` (what
    :func:`analogsam.evaluation.evaluate` takes)."""
    import time

    from analogsam.evaluation import evaluate, format_time
    from analogsam.evaluation.settings import PassLayout
    from analogsam.evaluation.statistics import summarize
    from analogsam.progress import progress_bar

    sharp, noise = probe_settings(_without(options, *_MODEL_OPTIONS))
    probe_options = {"sharpness": sharp, "robustness": noise, **{k: options[k] for k in _MODEL_OPTIONS if k in options}}
    steps = [("metric", m) for m in metrics] + [("curve", c) for c in curves] + [("analog", preset.name)]
    bar = progress_bar(steps, desc=label, disable=not progress, leave=False, unit="step", lines=False)
    merged = {"metrics": {}, "sharpness": {}, "curves": {}, "drops": {}, "timings": {}}
    analog_rows = []
    probed = run.model if device.type == "cpu" else copy.deepcopy(run.model).to(device)
    for kind, name in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        if kind == "metric":
            part = analyze_model(probed, train_batches, metrics=[name], curves=[], seed=seed, **probe_options)
            merged["metrics"].update(part["metrics"])
            merged["sharpness"].update(part["sharpness"])
            merged["sharpness_data"] = part["clean"]
            merged["analysis_settings"] = _without(part["settings"], "metrics", "curves")
        elif kind == "curve":
            part = analyze_model(probed, test_batches, metrics=[], curves=[name], seed=seed, **probe_options)
            merged["curves"].update(part["curves"])
            merged["drops"].update(part["drops"])
            merged["clean"] = part["clean"]
            merged["analysis_settings"] = _without(part["settings"], "metrics", "curves")
        else:
            analog_rows = evaluate(
                run,
                test_batches,
                preset,
                times=[t],
                repeats=repeats,
                seed=seed,
                layout=PassLayout(backend=backend, device=evaluation_device),
                progress=False,
                metric=options.get("metric", "accuracy"),
                output_fn=options.get("output_fn"),
            )
            cell = summarize(analog_rows)[0]
            digital = cell["digital_value"]
            merged["analog"] = {
                "preset": preset.name,
                "preset_hash": preset.hash,
                "t_seconds": t,
                "time": format_time(t),
                "repeats": cell["n"],
                "digital_accuracy": digital,
                "mean": cell["mean"],
                "std": cell["std"],
                "ci95_low": cell["ci95_low"],
                "ci95_high": cell["ci95_high"],
                "backend": analog_rows[0]["backend"],
                "metric": cell["metric"],
            }
            merged["digital_accuracy"] = digital
            merged["analog_accuracy"] = cell["mean"]
            # The drop is the loss to the hardware: positive when the analog value is worse.
            merged["accuracy_drop"] = digital - cell["mean"] if cell["higher_is_better"] else cell["mean"] - digital
        merged["timings"][name] = time.perf_counter() - start
    bar.close()
    return merged, analog_rows


def _without(mapping: Mapping, *keys) -> dict:
    return {k: v for k, v in mapping.items() if k not in keys}


def _table_rows(records: Sequence[Mapping], metrics: Sequence[str]) -> list[dict]:
    rows = []
    for r in records:
        row = {
            "run": r["run"],
            "optimizer": r.get("optimizer"),
            "model": r.get("model"),
            "dataset": r.get("dataset"),
            "preset": r["analog"]["preset"],
            "t_seconds": r["analog"]["t_seconds"],
            "repeats": r["analog"]["repeats"],
            "digital_accuracy": r["digital_accuracy"],
            "analog_accuracy": r["analog_accuracy"],
            "analog_std": r["analog"]["std"],
            "accuracy_drop": r["accuracy_drop"],
        }
        for m in metrics:
            sharp = r.get("sharpness", {}).get(m, {})
            row[m] = sharp.get("value")
            row[f"{m}_stderr"] = sharp.get("stderr")
        row.update(r.get("drops", {}))
        rows.append(row)
    return rows


def _fmt(value, spec=".4g") -> str:
    return value_text(value, spec, missing="–")


def _metric_cell(record: Mapping, metric: str) -> str:
    """``value`` or ``value ± stderr`` for the Monte-Carlo estimators."""
    sharp = record.get("sharpness", {}).get(metric, {})
    stderr = sharp.get("stderr")
    text = _fmt(sharp.get("value"))
    if sharp.get("diagnostics", {}).get("converged") is False:
        text += "†"
    return text if stderr is None else f"{text} ± {_fmt(stderr, '.2g')}"


def _markdown_report(records, correlations, settings, paths, out: Path) -> str:
    metrics = [m for m in METRICS if any(m in r.get("metrics", {}) for r in records)]
    a = records[0]["analog"] if records else {}
    lines = [
        "# Does flatness predict robustness?",
        "",
        f"{len(records)} runs. Accuracy drop = digital test accuracy − analog test accuracy on preset "
        f"**{a.get('preset')}** at **t = {a.get('time')}** after programming (mean of {settings['repeats']} "
        f"programmings, seed {settings['seed']}, backend {a.get('backend')}). Sharpness on "
        f"{settings['num_batches']} training batches of {settings['batch_size']} samples; noise and fault "
        "curves on the test samples. ρ > 0: sharper runs lost more accuracy; ± is the Monte-Carlo standard "
        "error of average sharpness and Hessian trace.",
        "",
        "## Sharpness and accuracy drop per run",
        "",
        *markdown_lines(
            ["run", "optimizer", "digital acc", "analog acc (± std)", "drop", *metrics],
            [
                [
                    r["run"],
                    r.get("optimizer"),
                    f"{r['digital_accuracy']:.2%}",
                    f"{r['analog_accuracy']:.2%} ± {_fmt(r['analog']['std'] * 100, '.2f')} pp",
                    f"{r['accuracy_drop'] * 100:.2f} pp",
                    *(_metric_cell(r, m) for m in metrics),
                ]
                for r in records
            ],
        ),
    ]
    if any(
        r.get("sharpness", {}).get(m, {}).get("diagnostics", {}).get("converged") is False
        for r in records
        for m in metrics
    ):
        lines += [
            "",
            "† power iteration stopped at its iteration limit before the eigenvalue settled to the "
            "tolerance: a lower bound (see `diagnostics` in the run's analysis.json); raise `hessian_iters`.",
        ]
    lines += [
        "",
        "## Spearman rank correlation with the analog accuracy drop",
        "",
        *markdown_lines(
            ["metric", "n", "Spearman ρ", "p (t-approx.)", "p (exact permutation)"],
            [
                [
                    c["metric"],
                    c["n"],
                    _fmt(c["spearman_rho"], ".2f"),
                    _fmt(c["p_value"], ".3g"),
                    _fmt(c["p_exact"], ".3g"),
                ]
                for c in correlations
                if c["drop"] == "accuracy_drop"
            ],
        ),
    ]
    others = sorted({c["drop"] for c in correlations} - {"accuracy_drop"})
    if others:
        lines += [
            "",
            "## Spearman ρ with the weight-noise and fault accuracy drops (test set)",
            "",
        ]
        by = {(c["metric"], c["drop"]): c["spearman_rho"] for c in correlations}
        lines += markdown_lines(
            ["metric", *others], [[m, *(_fmt(by.get((m, d)), ".2f") for d in others)] for m in metrics]
        )
    n = len(records)
    lines += [
        "",
        f"With n = {n} runs the exact two-sided p cannot go below "
        f"{2 / math.factorial(n) if 2 < n <= 8 else float('nan'):.3g}; read ρ as a description of these "
        "runs, not as a test.",
        "",
        "## Plots",
        "",
    ]
    for key, path in paths.items():
        if str(path).endswith(".png"):
            lines.append(f"- [{key}]({Path(path).relative_to(out).as_posix()})")
    return "\n".join(lines) + "\n"


@declare(
    {
        "repeats": Interval(int, 1),
        "seed": Interval(int, 0),
        "num_batches": Interval(int, 1),
        "batch_size": Interval(int, 1),
        "test_samples": OrNone(Interval(int, 1), "the whole test split"),
        "metrics": Subset(METRICS),
        "curves": Subset(CURVES),
        "quick": Boolean(),
        "progress": Boolean(),
    }
)
def analyze_runs(
    run_dirs: Sequence,
    out,
    *,
    preset="pcm",
    t: float | str = "1d",
    repeats: int = 5,
    seed: int = 0,
    num_batches: int = 4,
    batch_size: int = 256,
    test_samples: int | None = None,
    overrides: Mapping | None = None,
    backend: str = "auto",
    data_root=None,
    metrics: Sequence[str] = METRICS,
    curves: Sequence[str] = CURVES,
    quick: bool = False,
    progress: bool = True,
    device="auto",
    **analysis_options,
) -> dict:
    """Sharpness, robustness curves and analog accuracy drop of each run folder, and their correlation.

    Per run (folder ``out/<run name>/``): every sharpness metric on ``num_batches`` seeded random
    training batches of ``batch_size`` samples (the loss landscape the optimizer shaped), the
    weight-noise and fault curves on the test split (its first ``test_samples`` samples if given),
    and the analog accuracy at ``preset`` and time ``t`` over ``repeats`` programmings measured by
    :func:`analogsam.evaluation.evaluate` on the same test samples. Written as ``analysis.json``
    (everything), ``sharpness.csv``, ``curves.csv``, ``analog_results.csv`` and ``robustness.png``.
    ``analysis.json`` is written as soon as a run is done and records a hash of every setting and of
    the checkpoint, so rerunning after a crash, or with more runs, skips runs already analysed with
    the same settings.

    Across runs (folder ``out``): ``table.csv`` (one row per run: accuracies, drop, metrics with
    their standard errors, noise/fault drops), ``correlation.csv`` (Spearman ρ of each metric with
    the analog drop and with each noise/fault drop; t-approximation and exact permutation p),
    ``report.md``, one scatter ``sharpness_<metric>_vs_accuracy_drop.png`` per metric and
    ``robustness.png`` overlaying all runs' curves.

    ``analysis_options`` are the fields of :func:`analyze_model`'s settings objects
    (:class:`~analogsam.robustness.SharpnessSettings`: ``rho``, ``hessian_iters``, ...;
    :class:`~analogsam.robustness.CurveSettings`: ``relative_etas``, ...) and its ``metric``,
    ``output_fn`` and ``loss_fn``; ``asam_scope`` applies to runs not trained with ASAM/SAMSON, whose ``adaptive_sharpness``
    uses the scope they were trained with (:func:`adaptive_scope_for`); ``quick=True`` starts from
    :data:`QUICK_SETTINGS`. Its ``metric`` (a name, e.g.
    ``"perplexity"``) and ``output_fn`` also go to the analog evaluation: the ``*_accuracy`` columns
    then hold that metric's value and every drop is how much worse the perturbed or analog value is
    (positive whichever direction the metric has). ``device`` (:func:`analogsam.device.resolve_device`;
    ``"auto"``: the GPU where torch sees one) is where the probes and the evaluation run; a GPU is
    recorded in the settings, so analyses made on the CPU and on a GPU are kept apart. Returns
    ``{"records", "table",
    "correlations", "paths", "analysed", "skipped"}``.
    """
    from tqdm.auto import tqdm

    from analogsam.data import load_dataset
    from analogsam.evaluation import parse_times
    from analogsam.evaluation.backends import check_backend_device
    from analogsam.evaluation.store import write_rows
    from analogsam.hardware.conversion import resolve_preset
    from analogsam.progress import progress_bar
    from analogsam.runs import CHECKPOINT, load_run

    run_dirs = [Path(r) for r in run_dirs]
    if not run_dirs:
        raise InvalidParameterError(
            "analyze_runs needs at least one run folder: pass folders written by `analogsam train`"
        )
    times = parse_times([t] if isinstance(t, (int, float)) else t)
    if len(times) != 1:
        raise InvalidParameterError(
            f"analyze_runs measures the drop at one time, got {len(times)}: {t!r}; pass one time, e.g. t='1d'"
        )
    t = times[0]
    requested, device = device, check_backend_device(backend, device)
    preset = resolve_preset(preset, dict(overrides) if overrides else None)
    preset.check_times([t])
    options = {**(QUICK_SETTINGS if quick else {}), **analysis_options}
    probe_settings(_without(options, *_MODEL_OPTIONS))  # an unknown name or a bad value, refused now
    for d in run_dirs:
        if not (d / CHECKPOINT).exists():
            raise RunFolderError(f"no {CHECKPOINT} in {d}: pass run folders written by `analogsam train`")

    out = ensure_folder(out)
    settings = {
        "preset": preset.name,
        "preset_hash": preset.hash,
        "t_seconds": t,
        "repeats": repeats,
        "seed": seed,
        "num_batches": num_batches,
        "batch_size": batch_size,
        "test_samples": test_samples,
        "backend": backend,
        "metrics": list(metrics),
        "curves": list(curves),
        "options": options,
        # the CPU is not named: analyses made before devices existed keep matching
        **({} if device.type == "cpu" else {"device": str(device)}),
    }

    runs = [load_run(d) for d in run_dirs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise InvalidParameterError(
            f"two runs share a name ({', '.join(names)}): rename a run folder so results stay apart"
        )

    datasets: dict[str, object] = {}
    records, paths, analysed, skipped = [], {}, [], []
    outer = progress_bar(list(zip(run_dirs, runs)), desc="analyze", disable=not progress, unit="run")
    for run_dir, run in outer:
        folder = out / safe_name(run.name)
        run_settings = {**settings, "checkpoint": file_digest(run_dir / CHECKPOINT)}
        scope = adaptive_scope_for(run, options.get("asam_scope", SCOPE.default))
        if scope != "weights":  # recorded only when not the default, so earlier analyses still match
            run_settings["adaptive_scope"] = scope
        old = matching_record(folder / RUN_RECORD, run_settings)
        if old is not None:
            records.append(old)
            skipped.append(run.name)
            if progress:
                tqdm.write(f"[{run.name}] already analysed with these settings: {folder / RUN_RECORD}")
            continue
        key = _dataset_cache_key(run.config, data_root)
        if key not in datasets:
            options_ = dict(run.config.get("data_options", {}))
            if data_root is not None:
                options_["root"] = data_root
            if "dataset" not in run.config:
                raise InvalidParameterError(
                    f"run {run.name!r} does not record its dataset; analyze runs written by `analogsam train`"
                )
            datasets[key] = load_dataset(run.config["dataset"], **options_)
        data = datasets[key]
        train_batches = list(data.train.batches(batch_size, shuffle=True, seed=seed))[:num_batches]
        # Large test batches: a forward pass costs less per sample, and the accuracies do not depend on it.
        test = list(data.test.batches(_TEST_BATCH))
        if test_samples is not None:
            x = torch.cat([b[0] for b in test])[:test_samples]
            y = torch.cat([b[1] for b in test])[:test_samples]
            test = [(x[i : i + _TEST_BATCH], y[i : i + _TEST_BATCH]) for i in range(0, len(y), _TEST_BATCH)]
        merged, analog_rows = _analyze_one(
            run,
            train_batches,
            test,
            preset,
            t,
            repeats=repeats,
            seed=seed,
            backend=backend,
            metrics=metrics,
            curves=curves,
            options={**options, "asam_scope": scope},
            progress=progress,
            label=run.name,
            device=device,
            evaluation_device=requested,
        )
        record = {
            "run": run.name,
            "optimizer": run.optimizer,
            "model": run.config.get("model"),
            "dataset": run.config.get("dataset"),
            "run_dir": str(run_dir),
            "settings": run_settings,
            "settings_hash": settings_hash(run_settings),
            **merged,
        }
        record = jsonable(record)
        _write_run_files(record, folder, analog_rows)
        write_json(folder / RUN_RECORD, record)  # last: its presence means the run is complete
        records.append(record)
        analysed.append(run.name)
        if progress:
            tqdm.write(
                f"[{run.name}] digital {record['digital_accuracy']:.2%}, {preset.name} at "
                f"{record['analog']['time']} {record['analog_accuracy']:.2%} "
                f"(drop {record['accuracy_drop'] * 100:.2f} pp), "
                f"{sum(record['timings'].values()):.0f} s -> {folder}"
            )
    outer.close()
    for r in records:
        paths[f"run_{r['run']}"] = out / safe_name(r["run"]) / RUN_RECORD

    # Across runs.
    table = _table_rows(records, metrics)
    paths["table"] = out / TABLE_FILE
    write_rows(paths["table"], table, list(dict.fromkeys(k for row in table for k in row)))
    drops = ["accuracy_drop"] + sorted({d for r in records for d in r.get("drops", {})})
    correlations = robustness_correlation(records, metrics=list(metrics), drop=drops)
    for c in correlations:
        xs, ys, _ = paired(records, c["metric"], c["drop"])
        c["p_exact"] = exact_spearman_p(xs, ys)
    paths["correlation"] = out / CORRELATION_FILE
    write_rows(paths["correlation"], correlations, ["metric", "drop", "n", "spearman_rho", "p_value", "p_exact"])
    for m, p in zip(metrics, plot_sharpness_scatters(records, out, metrics=list(metrics), drop="accuracy_drop")):
        paths[f"scatter_{m}"] = p
    by_kind = {name: {r["run"]: r["curves"][name] for r in records if name in r.get("curves", {})} for name in curves}
    if any(by_kind.values()):
        paths["robustness"] = plot_robustness_panel(
            by_kind, out / "robustness.png", title="accuracy under weight noise and faults (test set)"
        )
    paths["report"] = out / REPORT_FILE
    paths["report"].write_text(_markdown_report(records, correlations, settings, paths, out))
    return {
        "records": records,
        "table": table,
        "correlations": correlations,
        "paths": paths,
        "analysed": analysed,
        "skipped": skipped,
    }
