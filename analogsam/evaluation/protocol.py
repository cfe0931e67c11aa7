"""Monte-Carlo accuracy (or any metric of :mod:`analogsam.scoring`) over time on simulated analog hardware.

For each repeat the analog weights are programmed afresh (a new programming-noise draw); then for
each time ``t`` they are drifted to ``t`` (from that same programming) and the test metric (top-1
accuracy unless ``metric=`` says otherwise) is measured. Every number is reproducible: a repeat's
seed is derived from ``(seed, run, faults, preset, repeat)``, so adding repeats, presets or runs never
changes the numbers already measured. The runs of a seed group share a name, so their repeat seeds
also include the training seed: two networks of one group never share a noise draw.

What programs, drifts and runs the forward is a backend (:mod:`.backends`), which also owns the
seeding below the repeat seed. The default ``backend="auto"`` is the fast engine
(:mod:`analogsam.hardware.fast`, a seeded replay of aihwkit's tile arithmetic, also faster) where it
replays the tiles, else aihwkit's C++ tiles, whose forward noise is not reproducible (the rows say
which backend measured them).

``device="cuda"`` runs the fast engine's forward (and the digital reference) on the GPU, batch by
batch; programming and drift stay aihwkit's on the CPU (see :mod:`.backends`). ``"auto"``, the
default, is the GPU where torch sees one, else the CPU.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing

import torch
from tqdm.auto import tqdm

from analogsam.errors import InvalidParameterError
from analogsam.evaluation.backends import StackingBackend, check_backend_device, make_backend
from analogsam.evaluation.coverage import LeftOutCellsWarning, describe_left_out, times_per_preset
from analogsam.evaluation.executor import run_tasks
from analogsam.evaluation.ray_sweep import check_ray, import_ray
from analogsam.evaluation.runs import default_batches, describe, load_runs, unpack
from analogsam.evaluation.seeds import derive_seed
from analogsam.evaluation.settings import PassLayout, RunLabels
from analogsam.evaluation.store import ResultStore, fault_label, run_label
from analogsam.evaluation.times import DEFAULT_TIMES, format_time, parse_times
from analogsam.hardware.conversion import convert, resolve_preset
from analogsam.hardware.presets import check_vary, variants
from analogsam.progress import progress_bar
from analogsam.scoring import Score, model_output, resolve_metric, score
from analogsam.validation import Boolean, Interval, check_int, declare

__all__ = ["DEFAULT_REPEATS", "DEFAULT_TIMES", "derive_seed", "evaluate", "format_time", "parse_times", "sweep"]

#: Programmings (independent programming-noise draws) per (run, preset) unless asked otherwise:
#: the one default of the API and of every command that evaluates (the default study sets its own).
DEFAULT_REPEATS = 10


def _rebatch(batches: Iterable, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Materialise ``(inputs, labels)`` batches (a generator is consumed once) into large batches.

    The analog forward pays a per-call overhead, so fewer larger calls are faster.
    """
    xs, ys = [], []
    for batch in batches:
        xs.append(batch[0])
        ys.append(batch[1])
    if not xs:
        raise InvalidParameterError("evaluate() got no batches: pass an iterable of (inputs, labels)")
    x, y = torch.cat(xs), torch.cat(ys)
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]


def _check_only_repeats(only_repeats, repeats: int) -> list[int] | None:
    if only_repeats is None:
        return None
    if isinstance(only_repeats, (str, bytes)) or not isinstance(only_repeats, Iterable):
        raise InvalidParameterError(f"only_repeats must be a list of repeat indices, got {only_repeats!r}")
    return [check_int(f"only_repeats[{i}]", k, low=0, high=repeats - 1) for i, k in enumerate(only_repeats)]


def _check_repeats_per_pass(repeats_per_pass) -> int | None:
    return None if repeats_per_pass is None else check_int("repeats_per_pass", repeats_per_pass, low=1)


def _passes(todo: list[int], per_pass: int | None) -> list[list[int]]:
    """The repeats of ``todo`` in groups measured together (one each without stacking)."""
    size = per_pass or 1
    return [todo[i : i + size] for i in range(0, len(todo), size)]


def _scoring_device(measure) -> torch.device | None:
    """Where the labels go to meet the backend's predictions (None: they stay on the CPU)."""
    return None if measure.device.type == "cpu" else measure.device


def _score_stacked(measure: StackingBackend, states: list, data, metric, output_fn) -> list[Score]:
    """Each captured state's :func:`~analogsam.scoring.score` over ``data``, from one stacked
    forward per batch (:meth:`StackingBackend.forward_stacked`). The predictions of every state are
    kept until the end of the pass (the stacked forward gives them together), then scored exactly
    as ``score`` scores the one-by-one forward's."""
    per_state = [[] for _ in states]
    for inputs, *_ in data:
        predictions = model_output(measure.forward_stacked(inputs, states), output_fn)
        if predictions.shape[0] != len(states) * len(inputs):
            raise InvalidParameterError(
                f"repeats_per_pass: the model's predictions have shape {tuple(predictions.shape)}, not the "
                f"{len(states)} x {len(inputs)} stacked samples first; evaluate with repeats_per_pass=None"
            )
        for k, block in enumerate(predictions.chunk(len(states))):
            per_state[k].append(block)
    scores = []
    for blocks in per_state:
        replay = iter(blocks)
        scores.append(score(lambda _inputs: next(replay), data, metric=metric, device=_scoring_device(measure)))  # noqa: B023 (called at once, inside the loop)
        blocks.clear()
    return scores


@declare({"repeats": Interval(int, 1), "seed": Interval(int, 0), "progress": Boolean()})
def evaluate(
    model,
    batches: Iterable,
    preset="pcm",
    *,
    times: Sequence[float] | str = DEFAULT_TIMES,
    repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
    run: str | None = None,
    overrides: dict | None = None,
    faults: dict | None = None,
    metric="accuracy",
    output_fn=None,
    layout: PassLayout | None = None,
    labels: RunLabels | None = None,
    store: ResultStore | None = None,
    only_repeats: Sequence[int] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Accuracy (or ``metric``) over time of ``model`` on analog hardware described by ``preset``.

    Each number depends only on (seed, run, faults, preset, repeat, t): adding repeats or time points
    leaves the numbers already measured unchanged.

    Args:
        model: a digital ``torch.nn.Module`` (any network with Linear/Conv layers) or a
            :class:`~analogsam.runs.TrainedRun`.
        batches: an iterable of ``(inputs, labels)`` batches (e.g. a DataLoader or ``dataset.batches()``).
        preset: a preset name, a TOML path, or a loaded :class:`~analogsam.hardware.presets.Preset`; it must
            be defined at every one of ``times``.
        times: seconds after programming (or ``"1s,1h,1d"``).
        repeats: independent programmings (programming-noise draws).
        seed: base seed (an integer >= 0); each repeat's seed is derived from (seed, run, faults, preset, repeat).
        run: the rows' run label (a TrainedRun's own name, else the model's class, if not given).
        overrides: preset values to change, e.g. ``{"io.adc_bits": 6}``.
        store: a :class:`~analogsam.evaluation.store.ResultStore`; finished cells are skipped and new ones appended.
        layout: a :class:`~analogsam.evaluation.settings.PassLayout` (``None``: its defaults):
            ``device``: where the forwards run: ``"auto"`` (CUDA when torch sees a GPU, else the CPU),
            ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``. On CUDA the fast engine runs on
            the GPU (programming and drift stay aihwkit's, on the CPU; the rows' backend is
            ``fast-cuda``); ``backend="aihwkit"`` is refused on an explicit ``"cuda"``, and
            ``backend="auto"`` there refuses a network the fast engine cannot replay; with
            ``"auto"`` such a network is measured by aihwkit on the CPU, as without a GPU
            (:func:`~analogsam.evaluation.backends.make_backend`).
            ``repeats_per_pass``: ``None`` (default): one forward pass over ``batches`` per (repeat, t). An
            integer P: the fast engine measures P repeats, each at every one of ``times``, in one
            stacked forward per batch (each programming and drift still aihwkit's, once per repeat
            and time; the first analog layer quantizes the inputs once for all of them; see
            :mod:`analogsam.hardware.fast.stacked`). The same seeds and the same noise draws. On
            the CPU the pass runs the network state by state after that shared first layer: the
            numbers are the one-by-one numbers bit for bit, for P x len(times) times the first
            layer's outputs in memory, and it pays where the first layer's quantization is a
            large share of the work (LeNet-5: 8% faster, ResNet-20: 4%, ``benchmarks/bench_evaluate.py``). On a GPU
            the states' samples run as one batch (what fills the device): the numbers equal the
            one-by-one numbers up to the summation order of the digital layers, for P x
            len(times) times the activation memory of a batch. With ``faults`` a pass
            holds one repeat (each converts its own faulted copy), and aihwkit's tiles measure one
            state at a time.
            ``backend``: ``"auto"`` (the seeded fast engine where it replays the tiles, else
            aihwkit), ``"fast"`` or ``"aihwkit"`` (:func:`analogsam.evaluation.backends.make_backend`);
            ``batch_size``: samples per analog forward call.
        labels: a :class:`~analogsam.evaluation.settings.RunLabels`: the rows' ``optimizer`` and
            further columns ``info`` for a module (a TrainedRun brings its own), and
            ``train_seed``, the seed the network was trained with, the rows' ``train_seed``
            (a TrainedRun's own by default). For one network of a seed group (a TrainedRun of
            :func:`~analogsam.runs.load_group`, or a module given a ``train_seed``) it also
            enters each repeat's seed, so the networks of a group never share a noise draw; a single
            run's repeat seeds are derived without it, as they always were.
        faults: memory faults applied to the weights before each programming, drawn afresh per repeat,
            e.g. ``{"stuck_at_rate": 0.01, "bit_flip_rate": 0.001, "bits": 8}`` (see
            :func:`analogsam.robustness.perturbations.faulted_copy`), so one evaluation covers faults and
            drift together; the rows' ``faults`` column names them (see :func:`~analogsam.evaluation.store.fault_label`).
            Presets that calibrate input ranges are calibrated on the first samples of ``batches``.
        only_repeats: measure just these repeat indices (how a sweep spreads cells over workers).
        metric: what each point measures: a name (``"accuracy"``, ``"top5"``, ``"cross_entropy"``,
            ``"perplexity"``, ``"mse"``, ``"r2"``), a :class:`~analogsam.scoring.Metric` (e.g.
            ``perplexity(ignore_index=0)``) or a callable returning a batch's (sum, count); see
            :func:`analogsam.scoring.resolve_metric`. The ``loss`` column is the metric's training
            loss (:func:`analogsam.scoring.task_loss`).
        output_fn: picks the prediction from the model's output (default: a tensor, a tuple's first
            element, a dict's or output object's ``logits``; :func:`analogsam.scoring.model_output`).

    Returns:
        One row per (repeat, t), with the columns run, optimizer, train_seed, seed_group, model, dataset, faults, preset, preset_hash, t_seconds,
        repeat, seed, metric, higher_is_better, value, accuracy, loss, digital_value, digital_accuracy,
        n_samples, backend (the columns of :mod:`analogsam.evaluation.columns`: ``accuracy`` and
        ``digital_accuracy`` are filled for accuracy rows only).
    """
    network, own = unpack(model)
    metric = resolve_metric(metric)
    layout = PassLayout.given("layout", layout)
    given = RunLabels.given("labels", labels)
    backend, device, batch_size, repeats_per_pass = (
        layout.backend,
        layout.device,
        layout.batch_size,
        layout.repeats_per_pass,
    )
    target = layout.target
    only_repeats = _check_only_repeats(only_repeats, repeats)
    if faults is not None and not isinstance(faults, Mapping):
        raise InvalidParameterError(f"faults must be a dict such as {{'stuck_at_rate': 0.01}}, got {faults!r}")
    times = parse_times(times)
    run = run or own.get("run") or type(network).__name__
    optimizer = given.optimizer or own.get("optimizer")
    train_seed = given.train_seed
    grouped = own.get("grouped", train_seed is not None)  # a module given its seed: one of a group
    train_seed = own.get("train_seed") if train_seed is None else train_seed
    info = {"model": own.get("model"), "dataset": own.get("dataset"), **(given.info or {})}
    faults_text = fault_label(faults)
    preset = resolve_preset(preset, overrides)
    preset.check_times(times)
    data = _rebatch(batches, batch_size)
    n_samples = sum(len(y) for _, y in data)

    # Conversion, calibration and the repeats seed or draw from torch's global generator: none of
    # that may change the caller's random stream.
    with torch.random.fork_rng():
        network = network.cpu().eval()
        # (on a GPU, a copy of the network there: the one converted stays on the CPU)
        on_gpu = target.type != "cpu"
        digital_value, _ = score(
            copy.deepcopy(network).to(target) if on_gpu else network,
            data,
            metric=metric,
            output_fn=output_fn,
            device=target if on_gpu else None,
        )
        digital_accuracy = digital_value if metric.name == "accuracy" else None
        wanted = range(repeats) if only_repeats is None else only_repeats
        todo = [
            r
            for r in wanted
            if store is None or not store.has(run, faults_text, preset, r, metric.name, train_seed if grouped else None)
        ]
        if not todo:
            return []

        def build(faults_seed=None):
            source = network
            if faults:
                from analogsam.robustness.perturbations import faulted_copy

                source = faulted_copy(network, seed=faults_seed, **faults)
            converted = convert(source, preset, calibration_batches=data, input_ranges=own.get("input_ranges"))
            return make_backend(converted, backend, device)

        if not faults:
            measure = build()  # convert once; each repeat only reprograms
        rows = []
        shown = run_label(run, faults_text) + (f" seed {train_seed}" if grouped else "")
        bar = progress_bar(
            total=len(todo) * len(times),
            desc=f"{shown} on {preset.name}",
            disable=not progress,
            leave=False,
            unit="point",
        )

        def point(repeat: int, repeat_seed: int, t: float, value: float, loss: float) -> dict:
            return {
                "run": run,
                "optimizer": optimizer,
                "train_seed": train_seed,
                "seed_group": grouped,
                "model": info.get("model"),
                "dataset": info.get("dataset"),
                "faults": faults_text,
                "preset": preset.name,
                "preset_hash": preset.hash,
                "t_seconds": t,
                "repeat": repeat,
                "seed": repeat_seed,
                "metric": metric.name,
                "higher_is_better": metric.higher_is_better,
                "value": value,
                "accuracy": value if metric.name == "accuracy" else None,
                "loss": loss,
                "digital_value": digital_value,
                "digital_accuracy": digital_accuracy,
                "n_samples": n_samples,
                "backend": measure.name,
                **preset.varied,  # a knob sweep's variant: one column per varied knob
            }

        def finished(cell: list[dict]) -> None:
            if store is not None:
                store.append_cell(cell)
            rows.extend(cell)

        for group in _passes(todo, None if faults else repeats_per_pass):
            seeds = [
                derive_seed(
                    seed,
                    run,
                    faults_text,
                    preset.seed_name,  # a sweep's variants share their base preset's draws
                    repeat,
                    *(("train_seed", train_seed) if grouped else ()),
                )
                for repeat in group
            ]
            if faults:  # each repeat draws its own faults, so it converts its own faulted copy
                measure = build(derive_seed(seeds[0], "faults"))
            if repeats_per_pass is not None and isinstance(measure, StackingBackend):
                states = []
                for repeat_seed in seeds:  # programming and drift stay one per repeat and time
                    measure.program(repeat_seed)
                    for t in times:
                        measure.drift(t, repeat_seed)
                        states.append(measure.capture())
                scores = iter(_score_stacked(measure, states, data, metric, output_fn))
                for repeat, repeat_seed in zip(group, seeds):
                    finished([point(repeat, repeat_seed, t, *next(scores)) for t in times])
                    bar.update(len(times))
                continue
            for repeat, repeat_seed in zip(group, seeds):
                measure.program(repeat_seed)
                cell = []
                for t in times:
                    measure.drift(t, repeat_seed)
                    value, loss = score(
                        measure.forward, data, metric=metric, output_fn=output_fn, device=_scoring_device(measure)
                    )
                    cell.append(point(repeat, repeat_seed, t, value, loss))
                    bar.update(1)
                finished(cell)
        bar.close()
        return rows


def _measure_pass(run, batches, preset, times, repeats: int, only_repeats: list[int], common: dict) -> list[dict]:
    """One task of a parallel sweep: the ``only_repeats`` (one repeat, or a stacked pass) of ``run`` on
    ``preset``, its rows returned for the driver to store (module-level, so that it pickles)."""
    return evaluate(
        run, batches, preset, times=times, repeats=repeats, only_repeats=only_repeats, progress=False, **common
    )


def sweep(
    runs: Sequence,
    presets: Sequence,
    *,
    batches_for=None,
    times=DEFAULT_TIMES,
    repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
    out=None,
    overrides: dict | None = None,
    backend: str = "auto",
    progress: bool = True,
    workers: int = 1,
    metric="accuracy",
    output_fn=None,
    ray=None,
    device="auto",
    repeats_per_pass: int | None = None,
    vary: Mapping | None = None,
    devices=None,
) -> list[dict]:
    """Evaluate every run on every preset, resuming from ``out`` if it holds finished cells.

    ``runs`` are :class:`~analogsam.runs.TrainedRun` objects, run folders or seed-group folders
    (a group gives one run per training seed, :func:`analogsam.runs.load_group`); ``batches_for(run)``
    returns the batches to evaluate a run on (default: the test split of the dataset it was trained on).
    Each preset is measured at the requested ``times`` its noise model defines; the (preset, time)
    cells left out are announced in one line, a :class:`~analogsam.evaluation.coverage.LeftOutCellsWarning`
    (:func:`analogsam.evaluation.coverage.times_per_preset` lists them beforehand), and a preset that
    defines none of the times is refused before anything is measured.
    ``workers > 1`` spreads the cells (one programming each) over that many local processes, each with
    an equal share of the CPU threads; the numbers do not depend on it, since every cell has its own seed.
    ``ray=True`` submits the cells as Ray tasks to a local Ray (``workers`` CPUs if given, else all),
    ``ray="HEAD:6379"`` to the Ray cluster at that address; each run and its batches travel through
    Ray's object store, so the cluster's nodes need not share this disk (:mod:`.ray_sweep`); a Ray
    this process already initialised (``ray.init``) is used as it is. Ray is the optional extra
    ``pip install 'analogsam[ray]'``. With workers or Ray, this process alone writes ``out``, each
    cell as it finishes, so a killed sweep resumes like a serial one.
    ``metric``, ``output_fn``, ``device`` and ``repeats_per_pass`` are :func:`evaluate`'s (with workers
    or Ray, the first two must be picklable: a name, a module-level function; on a GPU, every worker
    shares it); with workers or Ray each task measures a pass of ``repeats_per_pass`` repeats.
    ``vary`` sweeps device knobs: ``{"io.adc_bits": [4, 6, 8]}`` measures each preset once per value
    (several keys: once per point of their grid), as a variant named ``pcm[io.adc_bits=4]`` with its
    own hash (:func:`analogsam.hardware.presets.variants`), its rows carrying one column per varied
    key; the variants of a preset share its programming seeds (the same noise draws for every value),
    and adding values to ``vary`` later measures only the new variants. ``devices`` is a folder (or a
    list) of the user's own presets, loadable by name (also ``$ANALOGSAM_DEVICES``).
    Returns every row in ``out`` (old and new) if ``out`` is given, else the new rows.
    """
    vary = check_vary(vary)  # refused before anything is loaded
    repeats = check_int("repeats", repeats, low=1)
    seed = check_int("seed", seed, low=0)
    workers = check_int("workers", workers, low=1)
    ray = check_ray(ray, workers)
    repeats_per_pass = _check_repeats_per_pass(repeats_per_pass)
    check_backend_device(backend, device)  # refused before anything is loaded
    metric_name = resolve_metric(metric).name  # refuse a bad metric before measuring anything
    times = parse_times(times)
    presets = list(presets) if isinstance(presets, Iterable) and not isinstance(presets, str) else []
    if not presets:
        raise InvalidParameterError(
            f"presets must be a non-empty list of preset names, files or Presets, got {presets!r}"
        )
    if ray is not None:
        import_ray()  # say how to install Ray before loading anything
    runs = load_runs(runs)
    presets = [v for p in presets for v in variants(p, vary, overrides=overrides, devices=devices)]
    measured_times, left_out = times_per_preset(presets, times)  # refuse before measuring anything
    if left_out:
        warnings.warn(describe_left_out(left_out), LeftOutCellsWarning, stacklevel=2)
    store = None
    if out is not None:
        store = ResultStore(out)
        store.check_settings({"times": times, "seed": seed, "presets": {p.name: p.hash for p in presets}})
    batches_for = batches_for or default_batches
    data = [list(batches_for(r)) for r in runs]  # by position: the runs of a seed group share a name
    layout = PassLayout(backend=backend, device=device, repeats_per_pass=repeats_per_pass)
    common = dict(seed=seed, metric=metric, output_fn=output_fn, layout=layout)
    new_rows = []
    if workers == 1 and ray is None:
        # In this process each task is a whole (run, preset), converted once; evaluate writes each
        # cell to the store as it finishes and shows its own progress.
        def measure_run_on_preset(r, batches, p) -> list[dict]:
            start = time.perf_counter()
            rows = evaluate(
                r, batches, p, times=measured_times[p.name], repeats=repeats, store=store, progress=progress, **common
            )
            if progress and rows:
                tqdm.write(f"[{describe(r)} on {p.name}] {len(rows)} points in {time.perf_counter() - start:.1f} s")
            return rows

        for rows in run_tasks(measure_run_on_preset, [(r, data[i], p) for i, r in enumerate(runs) for p in presets]):
            new_rows.extend(rows)
        return store.rows if store is not None else new_rows

    # A task measures a pass: one repeat, or repeats_per_pass of them stacked (clean runs only).
    tasks = [
        (r, data[i], p, measured_times[p.name], repeats, group, common)
        for i, r in enumerate(runs)
        for p in presets
        for group in _passes(
            [
                k
                for k in range(repeats)
                if store is None
                or not store.has(r.name, "", p, k, metric_name, r.train_seed if r.group is not None else None)
            ],
            repeats_per_pass,
        )
    ]
    where = f"{workers} workers" if ray is None else "Ray" if ray is True else f"Ray at {ray}"
    finished = run_tasks(_measure_pass, tasks, workers=workers, ray=ray)
    with closing(finished):  # stopped early (an error, Ctrl-C): its processes or Ray tasks end now
        for rows in progress_bar(
            finished if tasks else (),
            total=len(tasks),
            desc=f"sweep ({where})",
            disable=not progress,
            unit="cell" if repeats_per_pass is None else "pass",
        ):
            for repeat in dict.fromkeys(row["repeat"] for row in rows):  # one cell (repeat) at a time
                cell = [row for row in rows if row["repeat"] == repeat]
                if store is not None:
                    store.append_cell(cell)  # only this process writes the store
                new_rows.extend(cell)
    return store.rows if store is not None else new_rows
