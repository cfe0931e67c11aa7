"""A sweep's cells as Ray tasks: a local Ray on this machine, or an existing Ray cluster.

:func:`analogsam.evaluation.sweep` hands its missing cells (one programming of one run on one
preset each) to :func:`analogsam.evaluation.executor.run_tasks`, which with ``ray=`` calls
:func:`tasks_on_ray`: one Ray task per cell, each cell's rows yielded as it finishes. The sweep, on
the driver, stays the one writer of the resumable store, so a killed driver loses only the cells in
flight and a rerun submits only the missing ones. The numbers are the serial sweep's: a cell's seed
is derived from (seed, run, faults, preset, repeat) wherever it runs.

What a task needs travels through Ray's object store, not through paths: each run (its network and
its labels, a pickled :class:`~analogsam.runs.TrainedRun`) and its evaluation batches, which all
the cells of that run share, are put there once (``ray.put``) and every cell reads them from it, so
the nodes of a cluster need not share the driver's disk. They need the same analogsam (and torch,
aihwkit) installed.

Ray is an optional extra (``pip install 'analogsam[ray]'``); this module imports it only when a
sweep asks for it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

from analogsam.errors import AnalogsamError, InvalidParameterError

__all__ = ["INSTALL_HINT", "RayConnectionError", "RayUnavailableError", "check_ray", "import_ray", "tasks_on_ray"]

INSTALL_HINT = "pip install 'analogsam[ray]'"

#: CPUs Ray reserves for each cell: a cell is one programming, measured with one torch thread (as the
#: local processes of ``workers=N`` share the threads out), so a node runs as many cells as it has CPUs.
CPUS_PER_CELL = 1


class RayUnavailableError(AnalogsamError, ImportError):
    """A sweep on Ray was asked for, and Ray is not installed."""


class RayConnectionError(AnalogsamError, ConnectionError):
    """The Ray cluster at the address given cannot be reached (or refuses this driver)."""


def import_ray():
    """The ``ray`` module, or :class:`RayUnavailableError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(
            f"sweeps on Ray (--ray, sweep(ray=...)) need Ray, which is not installed: {INSTALL_HINT}"
        ) from None
    return ray


def check_ray(ray, workers: int):
    """``ray=`` of :func:`~analogsam.evaluation.sweep`: None (no Ray), True (a local Ray) or a cluster
    address; ``workers`` (> 1) sizes a local Ray and means nothing to a cluster."""
    if ray is None or ray is False:
        return None
    if ray is not True and not (isinstance(ray, str) and ray.strip()):
        raise InvalidParameterError(
            f"ray must be None, True (a local Ray) or a cluster address such as 'HEAD:6379', got {ray!r}"
        )
    if isinstance(ray, str) and workers > 1:
        raise InvalidParameterError(
            f"workers={workers} sizes a local Ray, not the cluster at {ray.strip()} "
            "(its nodes' CPUs are its workers): leave workers out"
        )
    return ray if ray is True else ray.strip()


def _connect(ray, address, num_cpus) -> bool:
    """Connect to Ray (starting a local one for ``address=True``); True if this call started it.

    A Ray the caller already initialised is used as it is, and left running.
    """
    if ray.is_initialized():
        return False
    if address is True:
        # "local": a new Ray on this machine, never one found through RAY_ADDRESS or /tmp/ray.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    else:
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError) as err:
            said = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise RayConnectionError(
                f"cannot connect to the Ray cluster at {address} (Ray said: {said}): start it there with "
                "`ray start --head`, check the address (HEAD:6379), and where the cluster uses token "
                "authentication set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (`ray get-auth-token` on the head)"
            ) from None
    return True


_SMALL = (bool, int, float, str, bytes, type(None))


def _run_task(fn, *args):
    """One Ray task: ``fn(*args)`` with the CPUs Ray reserved for it."""
    import torch

    torch.set_num_threads(CPUS_PER_CELL)
    return fn(*args)


def tasks_on_ray(fn, tasks: list[tuple], *, address=True, num_cpus: int | None = None) -> Iterator:
    """``fn(*task)`` for each of ``tasks`` as Ray tasks; yield each result as it finishes.

    An argument that several tasks share (the same object: a run's network, its batches) goes into the
    object store once and every task reads it from there, so a cluster's nodes need not share this
    disk. ``address=True`` starts a local Ray with ``num_cpus`` CPUs (None: Ray's default, all of
    them) and shuts it down afterwards; an address (``"HEAD:6379"``) connects to that cluster. Tasks
    still pending when the caller stops (an error, Ctrl-C) are cancelled. An analogsam error raised
    on a worker is raised here as itself (one line, as it would read locally).
    """
    ray = import_ray()
    started = _connect(ray, address, num_cpus)
    pending = []
    try:
        remote = ray.remote(num_cpus=CPUS_PER_CELL)(_run_task)
        uses = Counter(id(a) for task in tasks for a in task if not isinstance(a, _SMALL))
        refs: dict[int, object] = {}

        def shared(arg):
            if uses.get(id(arg), 0) < 2:
                return arg
            if id(arg) not in refs:
                refs[id(arg)] = ray.put(arg)
            return refs[id(arg)]

        pending = [remote.remote(fn, *map(shared, task)) for task in tasks]
        while pending:
            (done,), pending = ray.wait(pending, num_returns=1)
            try:
                result = ray.get(done)
            except ray.exceptions.RayTaskError as err:
                # A user's mistake found on a worker reads as it would locally: one line, no remote traceback.
                if isinstance(err.cause, AnalogsamError):
                    raise err.cause from None
                raise
            yield result
    finally:
        for ref in pending:
            ray.cancel(ref)
        if started:
            ray.shutdown()
