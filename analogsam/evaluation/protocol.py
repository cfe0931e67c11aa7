"""Monte-Carlo accuracy (or any metric of :mod:`analogsam.scoring`) over time on simulated analog hardware.

For each repeat the analog weights are programmed afresh (a new programming-noise draw); then for
each time ``t`` they are drifted to ``t`` (from that same programming) and the test metric (top-1
accuracy unless ``metric=`` says otherwise) is measured. Every number is reproducible: a repeat's
seed is derived from ``(seed, run, preset, repeat)``, so adding repeats, presets or runs never
changes the numbers already measured.

What programs, drifts and runs the forward is a backend (:mod:`.backends`), which also owns the
seeding below the repeat seed. The default ``backend="auto"`` is the fast engine
(:mod:`analogsam.hardware.fast`, a seeded replay of aihwkit's tile arithmetic, also faster) where it
replays the tiles, else aihwkit's C++ tiles, whose forward noise is not reproducible (the rows say
which backend measured them).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Iterable, Sequence

import torch
from tqdm.auto import tqdm

from analogsam.errors import InvalidParameterError
from analogsam.evaluation.backends import BACKENDS, StackingBackend, make_backend
from analogsam.evaluation.coverage import LeftOutCellsWarning, describe_left_out, times_per_preset
from analogsam.evaluation.runs import default_batches, load_runs, unpack
from analogsam.evaluation.seeds import derive_seed
from analogsam.evaluation.store import ResultStore, fault_label, run_label
from analogsam.evaluation.times import DEFAULT_TIMES, format_time, parse_times
from analogsam.hardware.conversion import convert, resolve_preset
from analogsam.scoring import Score, model_output, resolve_metric, score
from analogsam.validation import check_choice, check_int

__all__ = ["DEFAULT_REPEATS", "DEFAULT_TIMES", "derive_seed", "evaluate", "format_time",
           "parse_times", "sweep"]

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
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size)]


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
    return [todo[i:i + size] for i in range(0, len(todo), size)]


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
                f"{len(states)} x {len(inputs)} stacked samples first; evaluate with repeats_per_pass=None")
        for k, block in enumerate(predictions.chunk(len(states))):
            per_state[k].append(block)
    scores = []
    for blocks in per_state:
        replay = iter(blocks)
        scores.append(score(lambda _inputs: next(replay), data, metric=metric))
        blocks.clear()
    return scores


def evaluate(model, batches: Iterable, preset="pcm", *, times: Sequence[float] | str = DEFAULT_TIMES,
             repeats: int = DEFAULT_REPEATS, seed: int = 0, run: str | None = None, optimizer: str | None = None,
             overrides: dict | None = None, store: ResultStore | None = None, backend: str = "auto",
             batch_size: int = 2000, progress: bool = True, info: dict | None = None,
             faults: dict | None = None, only_repeats: Sequence[int] | None = None, metric="accuracy",
             output_fn=None, repeats_per_pass: int | None = None) -> list[dict]:
    """Accuracy (or ``metric``) over time of ``model`` on analog hardware described by ``preset``.

    Each number depends only on (seed, run, faults, preset, repeat, t): adding repeats or time points
    leaves the numbers already measured unchanged.

    Args:
        model: a digital ``torch.nn.Module`` (any network with Linear/Conv layers) or a
            :class:`~analogsam.training.TrainedRun`.
        batches: an iterable of ``(inputs, labels)`` batches (e.g. a DataLoader or ``dataset.batches()``).
        preset: a preset name, a TOML path, or a loaded :class:`~analogsam.hardware.presets.Preset`; it must
            be defined at every one of ``times``.
        times: seconds after programming (or ``"1s,1h,1d"``).
        repeats: independent programmings (programming-noise draws).
        seed: base seed (an integer >= 0); each repeat's seed is derived from (seed, run, faults, preset, repeat).
        run, optimizer: labels for the rows (taken from a TrainedRun if not given).
        overrides: preset values to change, e.g. ``{"io.adc_bits": 6}``.
        store: a :class:`~analogsam.evaluation.store.ResultStore`; finished cells are skipped and new ones appended.
        backend: ``"auto"`` (seeded fast engine where it replays the tiles, else aihwkit), ``"fast"``,
            ``"aihwkit"``; see :func:`analogsam.evaluation.backends.make_backend`.
        batch_size: samples per analog forward call.
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
        repeats_per_pass: ``None`` (default): one forward pass over ``batches`` per (repeat, t). An
            integer P: the fast engine measures P repeats, each at every one of ``times``, in one
            stacked forward per batch (each programming and drift still aihwkit's, once per repeat
            and time; the first analog layer quantizes the inputs once for all of them; see
            :mod:`analogsam.hardware.fast.stacked`). The same seeds and the same noise draws: the
            numbers equal the one-by-one numbers up to the summation order of the digital layers.
            It costs P x len(times) times the activation memory of a batch, and on the CPU it pays
            only where the first layer's quantization is a large share of the work (LeNet-5: about
            8% faster; ResNet-20: about 15% slower, ``benchmarks/bench_evaluate.py``); with ``faults`` a pass
            holds one repeat (each converts its own faulted copy), and aihwkit's tiles measure one
            state at a time.

    Returns:
        One row per (repeat, t): run, optimizer, model, dataset, faults, preset, preset_hash, t_seconds,
        repeat, seed, metric, higher_is_better, value, accuracy, loss, digital_value, digital_accuracy,
        n_samples, backend (the columns of :mod:`analogsam.evaluation.columns`: ``accuracy`` and
        ``digital_accuracy`` are filled for accuracy rows only).
    """
    network, labels = unpack(model)
    metric = resolve_metric(metric)
    repeats = check_int("repeats", repeats, low=1)
    seed = check_int("seed", seed, low=0)
    batch_size = check_int("batch_size", batch_size, low=1)
    check_choice("backend", backend, BACKENDS)
    only_repeats = _check_only_repeats(only_repeats, repeats)
    repeats_per_pass = _check_repeats_per_pass(repeats_per_pass)
    if faults is not None and not isinstance(faults, Mapping):
        raise InvalidParameterError(f"faults must be a dict such as {{'stuck_at_rate': 0.01}}, got {faults!r}")
    times = parse_times(times)
    run = run or labels.get("run") or type(network).__name__
    optimizer = optimizer or labels.get("optimizer")
    info = {"model": labels.get("model"), "dataset": labels.get("dataset"), **(info or {})}
    faults_text = fault_label(faults)
    preset = resolve_preset(preset, overrides)
    preset.check_times(times)
    data = _rebatch(batches, batch_size)
    n_samples = sum(len(y) for _, y in data)

    # Conversion, calibration and the repeats seed or draw from torch's global generator: none of
    # that may change the caller's random stream.
    with torch.random.fork_rng():
        network = network.cpu().eval()
        digital_value, _ = score(network, data, metric=metric, output_fn=output_fn)
        digital_accuracy = digital_value if metric.name == "accuracy" else None
        wanted = range(repeats) if only_repeats is None else only_repeats
        todo = [r for r in wanted if store is None or not store.has(run, faults_text, preset, r, metric.name)]
        if not todo:
            return []

        def build(faults_seed=None):
            source = network
            if faults:
                from analogsam.robustness.perturbations import faulted_copy

                source = faulted_copy(network, seed=faults_seed, **faults)
            return make_backend(convert(source, preset, calibration_batches=data), backend)

        if not faults:
            measure = build()  # convert once; each repeat only reprograms
        rows = []
        bar = tqdm(total=len(todo) * len(times), desc=f"{run_label(run, faults_text)} on {preset.name}",
                   disable=not progress, leave=False, unit="point")

        def point(repeat: int, repeat_seed: int, t: float, value: float, loss: float) -> dict:
            return {"run": run, "optimizer": optimizer, "model": info.get("model"),
                    "dataset": info.get("dataset"), "faults": faults_text, "preset": preset.name,
                    "preset_hash": preset.hash, "t_seconds": t, "repeat": repeat, "seed": repeat_seed,
                    "metric": metric.name, "higher_is_better": metric.higher_is_better, "value": value,
                    "accuracy": value if metric.name == "accuracy" else None, "loss": loss,
                    "digital_value": digital_value, "digital_accuracy": digital_accuracy,
                    "n_samples": n_samples, "backend": measure.name}

        def finished(cell: list[dict]) -> None:
            if store is not None:
                store.append_cell(cell)
            rows.extend(cell)

        for group in _passes(todo, None if faults else repeats_per_pass):
            # Faults used to be a suffix of the run name, from which the repeat's seed is derived: a
            # faulted run keeps deriving it from exactly that string, so every faulted number stays.
            seeds = [derive_seed(seed, run_label(run, faults_text), preset.name, repeat) for repeat in group]
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
                    value, loss = score(measure.forward, data, metric=metric, output_fn=output_fn)
                    cell.append(point(repeat, repeat_seed, t, value, loss))
                    bar.update(1)
                finished(cell)
        bar.close()
        return rows


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def sweep(runs: Sequence, presets: Sequence, *, batches_for=None, times=DEFAULT_TIMES, repeats: int = DEFAULT_REPEATS,
          seed: int = 0, out=None, overrides: dict | None = None, backend: str = "auto",
          progress: bool = True, workers: int = 1, metric="accuracy", output_fn=None,
          repeats_per_pass: int | None = None) -> list[dict]:
    """Evaluate every run on every preset, resuming from ``out`` if it holds finished cells.

    ``runs`` are :class:`~analogsam.training.TrainedRun` objects (or run folders); ``batches_for(run)``
    returns the batches to evaluate a run on (default: the test split of the dataset it was trained on).
    Each preset is measured at the requested ``times`` its noise model defines; the (preset, time)
    cells left out are announced in one line, a :class:`~analogsam.evaluation.coverage.LeftOutCellsWarning`
    (:func:`analogsam.evaluation.coverage.times_per_preset` lists them beforehand), and a preset that
    defines none of the times is refused before anything is measured.
    ``workers > 1`` spreads the cells (one programming each) over that many local processes, each with
    an equal share of the CPU threads; the numbers do not depend on it, since every cell has its own seed.
    ``metric`` and ``output_fn`` are :func:`evaluate`'s (with workers, both must be picklable: a
    name, a module-level function). ``repeats_per_pass`` is :func:`evaluate`'s too (stacked
    repeats of the fast engine); with workers each process measures a pass of that many repeats.
    Returns every row in ``out`` (old and new) if ``out`` is given, else the new rows.
    """
    repeats = check_int("repeats", repeats, low=1)
    seed = check_int("seed", seed, low=0)
    workers = check_int("workers", workers, low=1)
    repeats_per_pass = _check_repeats_per_pass(repeats_per_pass)
    check_choice("backend", backend, BACKENDS)
    metric_name = resolve_metric(metric).name  # refuse a bad metric before measuring anything
    times = parse_times(times)
    presets = list(presets) if isinstance(presets, Iterable) and not isinstance(presets, str) else []
    if not presets:
        raise InvalidParameterError(f"presets must be a non-empty list of preset names, files or Presets, "
                                    f"got {presets!r}")
    runs = load_runs(runs)
    presets = [resolve_preset(p, overrides) for p in presets]
    measured_times, left_out = times_per_preset(presets, times)  # refuse before measuring anything
    if left_out:
        warnings.warn(describe_left_out(left_out), LeftOutCellsWarning, stacklevel=2)
    store = None
    if out is not None:
        store = ResultStore(out)
        store.check_settings({"times": times, "seed": seed, "presets": {p.name: p.hash for p in presets}})
    batches_for = batches_for or default_batches
    data = {r.name: list(batches_for(r)) for r in runs}
    common = dict(seed=seed, backend=backend, metric=metric, output_fn=output_fn, repeats_per_pass=repeats_per_pass)
    new_rows = []
    if workers == 1:
        for r in runs:
            for p in presets:
                start = time.perf_counter()
                rows = evaluate(r, data[r.name], p, times=measured_times[p.name], repeats=repeats, store=store,
                                progress=progress, **common)
                new_rows.extend(rows)
                if progress and rows:
                    tqdm.write(f"[{r.name} on {p.name}] {len(rows)} points in {time.perf_counter() - start:.1f} s")
        return store.rows if store is not None else new_rows

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    cells = [(r, p, group) for r in runs for p in presets  # a sweep measures clean runs
             for group in _passes([k for k in range(repeats) if store is None
                                   or not store.has(r.name, "", p, k, metric_name)], repeats_per_pass)]
    threads = max(1, torch.get_num_threads() // workers)
    # spawn, not fork: forking a process whose torch thread pools are running can deadlock.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,)) as pool:
        futures = [pool.submit(evaluate, r, data[r.name], p, times=measured_times[p.name], repeats=repeats,
                               only_repeats=group, progress=False, **common) for r, p, group in cells]
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"sweep ({workers} workers)",
                           disable=not progress, unit="cell" if repeats_per_pass is None else "pass"):
            rows = future.result()
            for repeat in dict.fromkeys(row["repeat"] for row in rows):  # one cell (repeat) at a time
                cell = [row for row in rows if row["repeat"] == repeat]
                if store is not None:
                    store.append_cell(cell)  # only this process writes the store
                new_rows.extend(cell)
    return store.rows if store is not None else new_rows
