"""Evaluation on simulated hardware: the seeded Monte-Carlo protocol (:mod:`.protocol`) measured by
a backend (:mod:`.backends`: aihwkit's tiles or the fast engine), the resumable result store
(:mod:`.store`), statistics over repeats and over training seeds (:mod:`.statistics`), time units (:mod:`.times`), the settings objects of
:func:`evaluate` (:mod:`.settings`), which
(preset, time) cells a comparison measures (:mod:`.coverage`) and reports (:mod:`.report`, :mod:`.knobs`
for knob sweeps)."""

from analogsam.evaluation.protocol import DEFAULT_REPEATS, evaluate, sweep
from analogsam.evaluation.seeds import derive_seed
from analogsam.evaluation.settings import PassLayout, RunLabels
from analogsam.evaluation.statistics import seed_level_test, summarize, summarize_seeds
from analogsam.evaluation.store import ResultStore, fault_label, read_rows
from analogsam.evaluation.times import DEFAULT_TIMES, format_time, parse_times

__all__ = [
    "DEFAULT_REPEATS",
    "DEFAULT_TIMES",
    "PassLayout",
    "ResultStore",
    "RunLabels",
    "derive_seed",
    "evaluate",
    "fault_label",
    "format_time",
    "parse_times",
    "read_rows",
    "seed_level_test",
    "summarize",
    "summarize_seeds",
    "sweep",
]
