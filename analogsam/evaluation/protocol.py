"""Monte-Carlo accuracy over time on simulated analog hardware.

For each repeat the analog weights are programmed afresh (a new programming-noise draw); then for
each time ``t`` they are drifted to ``t`` (from that same programming) and the test accuracy is
measured. Every number is reproducible: a repeat's seed is derived from ``(seed, run, preset,
repeat)``, so adding repeats, presets or runs never changes the numbers already measured.

Randomness comes from two places in aihwkit 1.1.0: programming and drift noise use torch's
generator (seeded here), but the C++ tiles' forward noise (``out_noise``, and the drift-compensation
read-out that goes through the forward) uses aihwkit's own generator, which is seeded from the clock
and cannot be seeded from Python. The default ``backend="auto"`` therefore runs the forward pass
through :mod:`analogsam.hardware.fast`, a torch re-implementation of the tile arithmetic that draws its
noise from a seeded generator (and is faster); presets it does not support fall back to aihwkit's
tiles, whose forward noise is then not reproducible (the rows say which backend measured them).
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Iterable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from analogsam.hardware.conversion import convert, resolve_preset
from analogsam.evaluation.store import ResultStore

#: The default study's time points: 1 s, 1 h, 1 day, 30 days, 1 year.
DEFAULT_TIMES = (1.0, 3600.0, 86400.0, 2592000.0, 31536000.0)

#: Programmings (independent programming-noise draws) per (run, preset) unless asked otherwise:
#: the one default of the API and of every command that evaluates (the default study sets its own).
DEFAULT_REPEATS = 10

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
          "y": 31536000.0}


def parse_times(text: str | Sequence[float | str]) -> list[float]:
    """Seconds from ``"1,3600"``, ``"1s,1h,1d,30d,1y"`` or a sequence; a year is 365 days."""
    items = text.split(",") if isinstance(text, str) else list(text)
    times = []
    for item in items:
        if isinstance(item, (int, float)):
            value = float(item)
        else:
            match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*", item.lower())
            if not match or match.group(2) not in ("", *_UNITS):
                raise ValueError(f"cannot read time {item!r}: use seconds or a number with a unit "
                                 f"({', '.join(_UNITS)}), e.g. 1s,1h,1d,30d,1y")
            value = float(match.group(1)) * _UNITS.get(match.group(2), 1.0)
        if value <= 0:
            raise ValueError(f"times must be positive (seconds after programming), got {item!r}")
        times.append(value)
    if not times:
        raise ValueError("no time points given")
    return times


def format_time(seconds: float) -> str:
    """1 -> '1s', 3600 -> '1h', 31536000 -> '1y' (the largest unit that divides exactly)."""
    for unit, size in (("y", 31536000.0), ("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def derive_seed(seed: int, *parts: object) -> int:
    """A 31-bit seed from ``seed`` and names/numbers; stable across processes and Python versions."""
    text = "\x1f".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def _rebatch(batches: Iterable, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Materialise ``(inputs, labels)`` batches (a generator is consumed once) into large batches.

    The analog forward pays a per-call overhead, so fewer larger calls are faster.
    """
    xs, ys = [], []
    for batch in batches:
        xs.append(batch[0])
        ys.append(batch[1])
    if not xs:
        raise ValueError("evaluate() got no batches: pass an iterable of (inputs, labels)")
    x, y = torch.cat(xs), torch.cat(ys)
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size)]


@torch.no_grad()
def _score(forward, batches) -> tuple[float, float]:
    from analogsam.scoring import score

    return score(forward, batches)


def _choose_backend(analog: nn.Module, backend: str):
    """(name, forward builder) for ``backend``; see the module docstring."""
    if backend not in ("auto", "fast", "aihwkit"):
        raise ValueError(f"backend must be 'auto', 'fast' or 'aihwkit', got {backend!r}")
    if backend != "aihwkit":
        from analogsam.hardware.fast import FastAnalogForward, unsupported_reason

        reason = unsupported_reason(analog)
        if reason is None:
            return "fast", FastAnalogForward(analog)
        if backend == "fast":
            raise ValueError(f"the fast path cannot reproduce this preset's tiles: {reason}. "
                             "Use backend='aihwkit'.")
    return "aihwkit", None


def evaluate(model, batches: Iterable, preset="pcm", *, times: Sequence[float] | str = DEFAULT_TIMES,
             repeats: int = DEFAULT_REPEATS, seed: int = 0, run: str | None = None, optimizer: str | None = None,
             overrides: dict | None = None, store: ResultStore | None = None, backend: str = "auto",
             batch_size: int = 2000, progress: bool = True, info: dict | None = None,
             faults: dict | None = None, only_repeats: Sequence[int] | None = None) -> list[dict]:
    """Accuracy over time of ``model`` on analog hardware described by ``preset``.

    Each number depends only on (seed, run, preset, repeat, t): adding repeats or time points leaves
    the numbers already measured unchanged.

    Args:
        model: a digital ``torch.nn.Module`` (any network with Linear/Conv layers) or a
            :class:`~analogsam.training.TrainedRun`.
        batches: an iterable of ``(inputs, labels)`` batches (e.g. a DataLoader or ``dataset.batches()``).
        preset: a preset name, a TOML path, or a loaded :class:`~analogsam.hardware.presets.Preset`.
        times: seconds after programming (or ``"1s,1h,1d"``).
        repeats: independent programmings (programming-noise draws).
        seed: base seed; each repeat's seed is derived from (seed, run, preset, repeat).
        run, optimizer: labels for the rows (taken from a TrainedRun if not given).
        overrides: preset values to change, e.g. ``{"io.adc_bits": 6}``.
        store: a :class:`~analogsam.evaluation.store.ResultStore`; finished cells are skipped and new ones appended.
        backend: ``"auto"`` (seeded fast path where it reproduces the tiles, else aihwkit), ``"fast"``, ``"aihwkit"``.
        faults: memory faults applied to the weights before each programming, drawn afresh per repeat,
            e.g. ``{"stuck_at_rate": 0.01, "bit_flip_rate": 0.001, "bits": 8}`` (see
            :func:`analogsam.robustness.perturbations.faulted_copy`), so one evaluation covers faults and drift together.
            Presets that calibrate input ranges are calibrated on the first samples of ``batches``.
        only_repeats: measure just these repeat indices (how a sweep spreads cells over workers).

    Returns:
        One row per (repeat, t): run, optimizer, model, dataset, preset, preset_hash, t_seconds,
        repeat, seed, accuracy, loss, digital_accuracy, n_samples, backend.
    """
    from analogsam.training import TrainedRun

    info = dict(info or {})
    if isinstance(model, TrainedRun):
        run = run or model.name
        optimizer = optimizer or model.optimizer
        info.setdefault("model", model.config.get("model"))
        info.setdefault("dataset", model.config.get("dataset"))
        model = model.model
    if not isinstance(model, nn.Module):
        raise TypeError(f"evaluate() needs a torch.nn.Module or a TrainedRun, got {type(model).__name__}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    run = run or type(model).__name__
    if faults:  # faulted results must never share a cell with clean ones
        run = f"{run} [{', '.join(f'{k}={v}' for k, v in sorted(faults.items()))}]"
    times = parse_times(times)
    preset = resolve_preset(preset, overrides)
    preset.check_times(times)
    data = _rebatch(batches, batch_size)
    n_samples = sum(len(y) for _, y in data)

    # Conversion, calibration and the repeats seed or draw from torch's global generator: none of
    # that may change the caller's random stream.
    with torch.random.fork_rng():
        model = model.cpu().eval()
        digital_accuracy, _ = _score(model, data)
        wanted = range(repeats) if only_repeats is None else only_repeats
        todo = [r for r in wanted if store is None or (run, preset.name, preset.hash, r) not in store.done]
        if not todo:
            return []

        def build(faulted_seed=None):
            source = model
            if faults:
                from analogsam.robustness.perturbations import faulted_copy

                source = faulted_copy(model, seed=faulted_seed, **faults)
            analog = convert(source, preset, calibration_batches=data)
            return (analog, *_choose_backend(analog, backend))

        if not faults:
            analog, backend_name, engine = build()  # convert once; each repeat only reprograms
        rows = []
        bar = tqdm(total=len(todo) * len(times), desc=f"{run} on {preset.name}", disable=not progress,
                   leave=False, unit="point")
        for repeat in todo:
            repeat_seed = derive_seed(seed, run, preset.name, repeat)
            if faults:
                analog, backend_name, engine = build(derive_seed(repeat_seed, "faults"))
            torch.manual_seed(repeat_seed)  # programming and drift noise are drawn from torch's generator
            analog.program_analog_weights()
            # The drift-compensation baseline belongs to the programming, not to the first time point.
            baseline = torch.Generator().manual_seed(derive_seed(repeat_seed, "program"))
            cell = []
            for t in times:
                # Drift exponents are drawn at programming; a drift draws fresh read noise, so each time
                # point gets its own seed rather than whatever the previous time point left in the stream.
                torch.manual_seed(derive_seed(repeat_seed, "drift", t))
                analog.drift_analog_weights(t)
                if engine is not None:
                    generator = torch.Generator().manual_seed(derive_seed(repeat_seed, "forward", t))
                    engine.sync(generator, baseline_generator=baseline)
                    acc, loss = _score(engine, data)
                else:
                    acc, loss = _score(analog, data)
                cell.append({"run": run, "optimizer": optimizer, "model": info.get("model"),
                             "dataset": info.get("dataset"), "preset": preset.name, "preset_hash": preset.hash,
                             "t_seconds": t, "repeat": repeat, "seed": repeat_seed, "accuracy": acc, "loss": loss,
                             "digital_accuracy": digital_accuracy, "n_samples": n_samples, "backend": backend_name})
                bar.update(1)
            if store is not None:
                store.append_cell(cell)
            rows.extend(cell)
        bar.close()
        return rows


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def sweep(runs: Sequence, presets: Sequence, *, batches_for=None, times=DEFAULT_TIMES, repeats: int = DEFAULT_REPEATS,
          seed: int = 0, out=None, overrides: dict | None = None, backend: str = "auto",
          progress: bool = True, workers: int = 1) -> list[dict]:
    """Evaluate every run on every preset, resuming from ``out`` if it holds finished cells.

    ``runs`` are :class:`~analogsam.training.TrainedRun` objects (or run folders); ``batches_for(run)``
    returns the batches to evaluate a run on (default: the test split of the dataset it was trained on).
    ``workers > 1`` spreads the cells (one programming each) over that many local processes, each with
    an equal share of the CPU threads; the numbers do not depend on it, since every cell has its own seed.
    Returns every row in ``out`` (old and new) if ``out`` is given, else the new rows.
    """
    from analogsam.training import TrainedRun, load_run, run_test_data

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    runs = [r if isinstance(r, TrainedRun) else load_run(r) for r in runs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"two runs share a name ({', '.join(names)}): rename a run folder so rows stay apart")
    presets = [resolve_preset(p, overrides) for p in presets]
    times = parse_times(times)
    for p in presets:
        p.check_times(times)  # refuse before measuring anything
    store = None
    if out is not None:
        store = ResultStore(out)
        store.check_settings({"times": times, "seed": seed, "presets": {p.name: p.hash for p in presets}})
    batches_for = batches_for or (lambda r: run_test_data(r).batches(2000))
    data = {r.name: list(batches_for(r)) for r in runs}
    common = dict(times=times, seed=seed, backend=backend)
    new_rows = []
    if workers == 1:
        for r in runs:
            for p in presets:
                start = time.perf_counter()
                rows = evaluate(r, data[r.name], p, repeats=repeats, store=store, progress=progress, **common)
                new_rows.extend(rows)
                if progress and rows:
                    tqdm.write(f"[{r.name} on {p.name}] {len(rows)} points in {time.perf_counter() - start:.1f} s")
        return store.rows if store is not None else new_rows

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    cells = [(r, p, k) for r in runs for p in presets for k in range(repeats)
             if store is None or (r.name, p.name, p.hash, k) not in store.done]
    threads = max(1, torch.get_num_threads() // workers)
    # spawn, not fork: forking a process whose torch thread pools are running can deadlock.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,)) as pool:
        futures = [pool.submit(evaluate, r, data[r.name], p, repeats=repeats, only_repeats=[k], progress=False,
                               **common) for r, p, k in cells]
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"sweep ({workers} workers)",
                           disable=not progress, unit="cell"):
            rows = future.result()
            if store is not None:
                store.append_cell(rows)  # only this process writes the store
            new_rows.extend(rows)
    return store.rows if store is not None else new_rows
