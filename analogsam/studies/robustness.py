"""The robustness study (``analogsam study robustness``): which training methods keep their accuracy
on simulated analog hardware, with the training seed as the unit of every claim (issue 15).

One command trains eight methods, each with the package's default hyperparameters, on LeNet-5 /
Fashion-MNIST (8 epochs, SGD lr 0.05, momentum 0.9, weight decay 5e-4, batch 128, cosine schedule;
all passed explicitly, so a later change of a package default does not change what the study
trains), three training seeds each, and measures every network over ten programmings on PCM (1 s,
1 h, 1 d, 30 d, 1 y) and on the NeuRRAM RRAM preset ``rram-wan2022`` (1 s, 1 d, 2 d: the only times
its noise model defines). The methods (:data:`METHODS`): SGD, SAM, ASAM with both scopes (layer
weights only, the authors' code; every parameter, davda54/sam and pytorch_optimizer), SAMSON,
adversarial weight-noise training (Büchel et al.), SAF and noise injection; and (issue 21) hardware-aware
training through the PCM preset's tile model (``hwa``: the second reference of the report's tests), SAM
and SAMSON on top of it, the device-shaped sharpness ``device-sam`` (PCM's noise at 1 d) and HWA for the
RRAM preset (``hwa-rram``; every network is measured on both devices, so HWA for one device measured on
the other is in the tables). A method whose every cell is already in the result stores while its runs
are not all here (e.g. the committed rows copied into ``OUT/eval``) is neither trained nor measured again.

It is resumable at every level: the networks are seed groups ``OUT/train/<method>/seed-N``
(:func:`analogsam.training.train_seeds`, which reuses a finished seed trained with the same
settings), the measurements live in result stores ``OUT/eval/<preset>`` (a rerun measures only the
missing cells) and the report is rewritten from the stores after every method. Before anything runs,
the remaining work's wall time is *measured*: a few training steps of each method still to train and
one programming per preset on this machine, extrapolated to the steps and programmings left.

The report (``OUT/report.md``) gives per preset the accuracy and the drop from the digital accuracy
(mean over seeds of each network's mean over programmings, ± the 95% CI over seeds:
:func:`analogsam.evaluation.statistics.summarize_seeds`), the within-network programming spread σp,
each method's two-sided Welch p-value against SGD over seeds, on accuracy and on drop
(:func:`analogsam.evaluation.statistics.seed_level_test`), the plots, the exact command and the wall
time of every stage (``OUT/timings.json`` keeps every invocation's).

``quick=True`` is the same pipeline, every method included, on a tiny problem (128 training and 200
test samples, four epochs, so that SAF's term, which starts after three, switches on; two seeds, two
programmings, two times per preset) for the test suite.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from analogsam.errors import AnalogsamError
from analogsam.evaluation import evaluate, parse_times, read_rows, sweep
from analogsam.evaluation.report import (
    markdown_table,
    plot_accuracy_vs_time,
    plot_drops,
    seed_spread_table,
    seed_test_table,
)
from analogsam.evaluation.settings import PassLayout
from analogsam.evaluation.statistics import SEED_SUMMARY_COLUMNS, SEED_TEST_COLUMNS, seed_level_test, summarize_seeds
from analogsam.evaluation.store import write_rows
from analogsam.models import build_model, make_spec
from analogsam.optim import build_method
from analogsam.reporting import markdown_lines
from analogsam.runs import run_config
from analogsam.storage import ensure_folder, read_json, write_json
from analogsam.studies.scaffold import (
    SeedStudySettings,
    check_study_folder,
    duration_text,
    finished,
    group_folder,
    run_folder,
)
from analogsam.training import train_seeds

__all__ = ["FULL", "METHODS", "QUICK", "StudyMethod", "StudySettings", "StudySettingsError", "robustness_study"]


class StudySettingsError(AnalogsamError, ValueError):
    """The study folder holds a study run with other settings (e.g. ``--quick`` and the full one)."""


@dataclass(frozen=True)
class StudyMethod:
    """One method of the study: its label (the seed group's name), optimizer and what it sets."""

    label: str
    optimizer: str
    hparams: dict = field(default_factory=dict)
    #: the device preset of hardware-aware training (:mod:`analogsam.hardware.hwa`), or None
    hardware_aware: str | None = None

    def train_options(self) -> dict:
        """The optimizer's hyperparameters, and ``hardware_aware`` where set (so a run's identity, and
        the reuse of the runs trained before HWA existed, stays what it was for the other methods)."""
        return {**self.hparams, **({"hardware_aware": self.hardware_aware} if self.hardware_aware else {})}


#: The methods, in the order they are trained (the costliest, adversarial training, last, so the
#: report covers the others first) and reported. Each runs with the package's defaults, except that
#: the two ASAM variants name their scope.
METHODS: tuple[StudyMethod, ...] = (
    StudyMethod("sgd", "sgd"),
    StudyMethod("sam", "sam"),
    StudyMethod("asam-weights", "asam", {"scope": "weights"}),
    StudyMethod("asam-all", "asam", {"scope": "all"}),
    StudyMethod("samson", "samson"),
    StudyMethod("saf", "saf"),
    StudyMethod("noise", "noise"),
    StudyMethod("adversarial", "adversarial"),
    # issue 21: hardware-aware training (for PCM; and for RRAM, measured on both: the transfer),
    # SAM and SAMSON on top of it, and the device-shaped sharpness (PCM's noise at 1 d)
    StudyMethod("hwa", "sgd", hardware_aware="pcm"),
    StudyMethod("sam-hwa", "sam", hardware_aware="pcm"),
    StudyMethod("device-sam", "device-sam", {"device_preset": "pcm", "device_time": 86400.0}),
    StudyMethod("samson-hwa", "samson", hardware_aware="pcm"),
    StudyMethod("hwa-rram", "sgd", hardware_aware="rram-wan2022"),
)
BASELINE = "sgd"
#: The second reference of the report's tests: hardware-aware training for the PCM preset.
HWA_BASELINE = "hwa"


@dataclass(frozen=True)
class StudySettings(SeedStudySettings):
    """Everything that decides what the study trains (:class:`~.scaffold.SeedStudySettings`: LeNet-5 on
    Fashion-MNIST, 8 epochs, seeds 0, 1, 2) and measures."""

    repeats: int = 10
    eval_seed: int = 0
    presets: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("pcm", ("1s", "1h", "1d", "30d", "1y")),
        ("rram-wan2022", ("1s", "1d", "2d")),
    )
    backend: str = "auto"


#: The study as it is reported.
FULL = StudySettings()
# 4 epochs: SAF's term starts after saf_history = 3 epochs by default, and must start for SAF to be SAF.
#: The same pipeline on a tiny problem (``--quick``).
QUICK = replace(
    FULL,
    train_limit=128,
    test_limit=200,
    epochs=4,
    seeds=(0, 1),
    repeats=2,
    presets=(("pcm", ("1s", "1y")), ("rram-wan2022", ("1s", "2d"))),
)

TIMINGS = "timings.json"
REPORT = "report.md"
_TEST_BATCH = 2000
_COST_SAMPLES = 2000  # test samples one programming is timed on before the run (scaled to the test set)
_INTERIM_REPORT_AFTER = 60.0  # seconds a method's stages take before the report is rewritten after it


def _log(progress: bool, text: str) -> None:
    if progress:
        print(text, flush=True)


def jsonable_settings(settings: StudySettings) -> dict:
    data = asdict(settings)
    data["presets"] = {name: list(times) for name, times in settings.presets}
    data["seeds"] = list(settings.seeds)
    return data


def _finished_seeds(out: Path, method: StudyMethod, settings: StudySettings) -> list[int]:
    """Seeds whose run is finished (:func:`analogsam.runs.is_finished`); train_seeds checks the
    settings themselves."""
    return finished(out, method.label, settings.seeds)


def _measured_before(out: Path, method: StudyMethod, settings: StudySettings) -> bool:
    """Whether every cell of ``method`` is in the result stores while its runs are not all here: it was
    measured by an earlier invocation (e.g. the committed rows copied into ``OUT/eval``, the run folders
    being elsewhere), so neither training nor measuring it again would add anything."""
    if len(_finished_seeds(out, method, settings)) == len(settings.seeds):
        return False
    wanted = {(method.label, s, k) for s in settings.seeds for k in range(settings.repeats)}
    return all(wanted <= _measured_programmings(out, preset) for preset, _ in settings.presets)


def _measured_programmings(out: Path, preset: str) -> set[tuple]:
    path = out / "eval" / preset / "results.csv"
    rows = read_rows(path) if path.exists() else []
    return {(r["run"], r.get("train_seed"), r["repeat"]) for r in rows}


# -- the up-front estimate -----------------------------------------------------------------------------


def _fresh_model(settings: StudySettings, data):
    return build_model(
        make_spec(
            settings.model, in_channels=data.in_channels, num_classes=data.num_classes, input_size=data.input_size
        )
    )


def _seconds_per_step(method: StudyMethod, settings: StudySettings, data, steps: int = 3, warmup: int = 1) -> float:
    """Wall time of one training step of ``method`` (after ``warmup`` steps), measured here."""
    torch.manual_seed(0)
    model = _fresh_model(settings, data)
    if method.hardware_aware:
        from analogsam.hardware.hwa import attach_hardware_aware

        attach_hardware_aware(model, method.hardware_aware)
    trainer = build_method(
        method.optimizer,
        model,
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
        num_samples=len(data.train),
        num_classes=data.num_classes,
        epochs=settings.epochs,
        **method.hparams,
    )
    trainer.begin_epoch(0)
    model.train()
    batches = itertools.cycle(
        list(
            itertools.islice(
                data.train.batches(settings.batch_size, shuffle=True, seed=0, with_indices=True), warmup + steps
            )
        )
    )
    for i, (x, y, idx) in enumerate(itertools.islice(batches, warmup + steps)):
        if i == warmup:
            start = time.perf_counter()
        trainer.train_step(x, y, idx)
    return (time.perf_counter() - start) / steps


def _seconds_per_test_pass(settings: StudySettings, data) -> float:
    """Wall time of the digital test pass that training does after every epoch."""
    model = _fresh_model(settings, data).eval()
    start = time.perf_counter()
    with torch.no_grad():
        for x, _ in data.test.batches(1024):
            model(x)
    return time.perf_counter() - start


def _seconds_per_programming(preset: str, times: Sequence[float], settings: StudySettings, data, test) -> float:
    """Wall time of one programming measured at every time of ``preset``, on up to
    :data:`_COST_SAMPLES` test samples (after a warm-up one) and scaled to the whole test set."""
    x, y = torch.cat([b[0] for b in test]), torch.cat([b[1] for b in test])
    n = min(len(y), _COST_SAMPLES)
    model = _fresh_model(settings, data).eval()
    layout = PassLayout(backend=settings.backend)
    common = dict(times=list(times), repeats=1, seed=settings.eval_seed, layout=layout, progress=False)
    evaluate(model, [(x[:64], y[:64])], preset, **common)  # warm-up: compiled kernels, caches
    start = time.perf_counter()
    evaluate(model, [(x[:n], y[:n])], preset, **common)
    return (time.perf_counter() - start) * len(y) / n


def estimate(out: Path, settings: StudySettings, data, test, methods: Sequence[StudyMethod]) -> dict:
    """The measured wall time of the work left: seconds per stage, and how it was measured."""
    steps_per_run = math.ceil(len(data.train) / settings.batch_size) * settings.epochs
    test_pass = None
    train, lines = {}, []
    for m in methods:
        missing = len(settings.seeds) - len(_finished_seeds(out, m, settings))
        if missing and not _measured_before(out, m, settings):
            step = _seconds_per_step(m, settings, data)
            test_pass = _seconds_per_test_pass(settings, data) if test_pass is None else test_pass
            train[m.label] = missing * (steps_per_run * step + settings.epochs * test_pass)
            lines.append(
                f"train {m.label}: {missing} run(s) x {steps_per_run} steps x {step:.3f} s/step "
                f"(+ {settings.epochs} test passes of {test_pass:.1f} s) = {train[m.label]:.0f} s"
            )
    evals = {}
    for preset, times in settings.presets:
        done = _measured_programmings(out, preset)
        missing = sum(
            1 for m in methods for s in settings.seeds for k in range(settings.repeats) if (m.label, s, k) not in done
        )
        if missing:
            each = _seconds_per_programming(preset, parse_times(list(times)), settings, data, test)
            evals[preset] = missing * each
            lines.append(
                f"evaluate {preset}: {missing} programmings x {len(times)} times, {each:.1f} s each "
                f"= {evals[preset]:.0f} s"
            )
    total = sum(train.values()) + sum(evals.values())
    return {"train": train, "evaluate": evals, "total": total, "lines": lines}


# -- the study -------------------------------------------------------------------------------------------


def robustness_study(
    out: str | Path,
    *,
    quick: bool = False,
    data_root=None,
    progress: bool = True,
    log: bool = True,
    command: str | None = None,
    settings: StudySettings | None = None,
    methods: Sequence[StudyMethod] = METHODS,
) -> dict:
    """Train, measure and report the robustness study into ``out``; rerunning resumes it.

    ``quick`` picks :data:`QUICK` instead of :data:`FULL` (``settings`` overrides both); ``command``
    is the command line recorded in the report; ``progress`` shows the training and evaluation bars,
    ``log`` prints a line per stage (the estimate first). Returns ``{"report", "rows", "trained", "measured",
    "estimate", "timings"}``: ``trained`` lists the ``(method, seed)`` runs trained by this call,
    ``measured`` counts the result rows it added.
    """
    settings = settings or (QUICK if quick else FULL)
    out = ensure_folder(out, "study folder")
    check_study_folder(out, jsonable_settings(settings), StudySettingsError, "a robustness study")
    started = time.time()
    stages: dict[str, float] = {}

    clock = time.perf_counter()
    data = settings.load_data(data_root)
    test = list(data.test.batches(_TEST_BATCH))
    stages["load data"] = time.perf_counter() - clock

    clock = time.perf_counter()
    planned = estimate(out, settings, data, test, methods)
    stages["measure the runtime"] = time.perf_counter() - clock
    _log(
        log,
        f"robustness study in {out}: {len(methods)} methods x {len(settings.seeds)} training seeds, "
        f"{settings.repeats} programmings on {', '.join(p for p, _ in settings.presets)}",
    )
    if planned["total"]:
        _log(
            log,
            f"expected wall time of the work left, measured on this machine just now: {duration_text(planned['total'])}",
        )
        for line in planned["lines"]:
            _log(log, f"  {line}")
    else:
        _log(log, "every run is trained and every cell measured: rewriting the report only")

    trained, before = [], sum(len(_measured_programmings(out, p)) for p, _ in settings.presets)
    for i, method in enumerate(methods, 1):
        group = group_folder(out, method.label)
        clock = method_clock = time.perf_counter()
        if _measured_before(out, method, settings):
            _log(log, f"[{i}/{len(methods)}] {method.label}: every cell measured earlier (its runs are elsewhere)")
            continue
        _log(
            log,
            f"[{i}/{len(methods)}] {method.label}: training seeds "
            f"{', '.join(map(str, settings.seeds))} (finished ones are reused)",
        )
        runs = train_seeds(
            data=data,
            seeds=list(settings.seeds),
            out=group,
            run_name=method.label,
            optimizer=method.optimizer,
            progress=progress,
            **settings.train_kwargs(),
            **method.train_options(),
        )
        new = [r.train_seed for r in runs if not r.reused]
        trained += [(method.label, s) for s in new]
        stages[f"train {method.label}"] = time.perf_counter() - clock
        _log(
            log,
            f"[{i}/{len(methods)}] {method.label}: {len(new)} run(s) trained, "
            f"{len(settings.seeds) - len(new)} reused, {stages[f'train {method.label}']:.0f} s; digital "
            + ", ".join(f"seed {r.train_seed} {r.metrics[-1]['test_accuracy']:.2%}" for r in runs),
        )
        for preset, times in settings.presets:
            clock = time.perf_counter()
            sweep(
                runs,
                [preset],
                batches_for=lambda run: test,
                times=list(times),
                repeats=settings.repeats,
                seed=settings.eval_seed,
                out=out / "eval" / preset,
                backend=settings.backend,
                progress=progress,
            )
            stages[f"evaluate {method.label} on {preset}"] = time.perf_counter() - clock
            _log(
                log,
                f"[{i}/{len(methods)}] {method.label} on {preset}: "
                f"{stages[f'evaluate {method.label} on {preset}']:.0f} s",
            )
        if time.perf_counter() - method_clock > _INTERIM_REPORT_AFTER:  # a long run shows results as they come
            clock = time.perf_counter()
            timings = _record_timings(out, started, command, stages, trained, planned)
            write_study_report(out, settings, methods, command, timings)
            stages["report"] = stages.get("report", 0.0) + time.perf_counter() - clock
    clock = time.perf_counter()
    report = write_study_report(
        out, settings, methods, command, _record_timings(out, started, command, stages, trained, planned)
    )
    stages["report"] = stages.get("report", 0.0) + time.perf_counter() - clock
    timings = _record_timings(out, started, command, stages, trained, planned)  # the report's own time too
    rows = _all_rows(out, settings)
    measured = len({(r["preset"], r["run"], r.get("train_seed"), r["repeat"]) for r in rows}) - before
    _log(
        log,
        f"finished in {time.time() - started:.0f} s: {len(trained)} run(s) trained, {measured} "
        f"programming(s) measured; report: {report}",
    )
    return {
        "report": report,
        "rows": rows,
        "trained": trained,
        "measured": measured,
        "estimate": planned,
        "timings": timings,
    }


def portable_command(command: str | None) -> str | None:
    """``command`` as a report shows it: a folder given to ``--out`` or ``--data-root`` by an absolute
    path becomes ``OUT`` or ``DATA_ROOT``. Reports are committed and shared; they say what ran, not
    in which folders of which machine."""
    if not command:
        return command
    words = command.split(" ")
    for i, word in enumerate(words[1:], start=1):
        placeholder = {"--out": "OUT", "--data-root": "DATA_ROOT"}.get(words[i - 1])
        if placeholder and Path(word).is_absolute():
            words[i] = placeholder
    return " ".join(words)


def _record_timings(out: Path, started: float, command, stages: dict, trained: list, planned: dict) -> list[dict]:
    """Append (or update) this invocation's stage wall times in ``OUT/timings.json``; returns them all."""
    path = out / TIMINGS
    history = read_json(path) or []
    entry = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "command": portable_command(command),
        "expected_seconds": round(planned["total"], 1),
        "wall_seconds": round(time.time() - started, 1),
        "stages": {k: round(v, 1) for k, v in stages.items()},
        "trained": [list(t) for t in trained],
    }
    if history and history[-1].get("started") == entry["started"]:
        history[-1] = entry
    else:
        history.append(entry)
    write_json(path, history)
    return history


def _all_rows(out: Path, settings: StudySettings) -> list[dict]:
    rows = []
    for preset, _ in settings.presets:
        path = out / "eval" / preset / "results.csv"
        if path.exists():
            rows += read_rows(path)
    return rows


# -- the report --------------------------------------------------------------------------------------------


def _method_lines(out: Path, methods: Sequence[StudyMethod], settings: StudySettings) -> list[str]:
    """The methods with the hyperparameters their runs were trained with (read from a run's config)."""
    rows = []
    base = {"base", "lr", "momentum", "weight_decay"}
    for m in methods:
        config = run_config(run_folder(out, m.label, settings.seeds[0]))
        hwa = f"; hardware-aware for `{m.hardware_aware}`" if m.hardware_aware else ""
        if config is None:
            earlier = _measured_before(out, m, settings)
            rows.append([m.label, m.optimizer, f"{'measured earlier' if earlier else 'not trained yet'}{hwa}"])
            continue
        hp = {k: v for k, v in config.get("optimizer_hparams", {}).items() if k not in base}
        rows.append([m.label, m.optimizer, (", ".join(f"{k}={v}" for k, v in hp.items()) or "—") + hwa])
    return markdown_lines(["method", "optimizer", "hyperparameters (as trained)"], rows)


def write_study_report(
    out: Path, settings: StudySettings, methods: Sequence[StudyMethod], command, timings: list[dict]
) -> Path:
    """``OUT/report.md`` with its tables and plots (``OUT/summary.csv``, ``OUT/tests.csv``, PNGs), from
    every row measured so far."""
    rows = _all_rows(out, settings)
    order = [m.label for m in methods]
    summary = summarize_seeds(rows) if rows else []
    write_rows(out / "summary.csv", summary, SEED_SUMMARY_COLUMNS)
    tests = []
    if any(r["run"] == BASELINE for r in rows):
        tests = seed_level_test(rows, BASELINE, quantity="value") + seed_level_test(rows, BASELINE, quantity="drop")
    write_rows(out / "tests.csv", tests, SEED_TEST_COLUMNS)
    hwa_tests = []
    if HWA_BASELINE in order and any(r["run"] == HWA_BASELINE for r in rows):
        hwa_tests = seed_level_test(rows, HWA_BASELINE, quantity="value") + seed_level_test(
            rows, HWA_BASELINE, quantity="drop"
        )
        write_rows(out / "tests-vs-hwa.csv", hwa_tests, SEED_TEST_COLUMNS)
    s = settings
    lines = [
        "# Robustness study: training methods on simulated analog hardware, over training seeds",
        "",
        f"Command: `{portable_command(command) or 'robustness_study(...)'}` (on {os.cpu_count()} CPU cores)",
        "",
        f"Setting: `{s.model}` on `{s.dataset}` ({_subset(s)}), {s.epochs} epochs, SGD lr {s.lr:g}, momentum "
        f"{s.momentum:g}, weight decay {s.weight_decay:g}, batch {s.batch_size}, {s.schedule} schedule (every method's "
        f"base optimizer); training seeds {', '.join(map(str, s.seeds))}; {s.repeats} programmings per network "
        f"(evaluation seed {s.eval_seed}, backend `{s.backend}`; torch threads {torch.get_num_threads()}); "
        + "; ".join(f"`{p}` at {', '.join(times)}" for p, times in s.presets)
        + ".",
        "",
        "Each accuracy cell is the mean over training seeds of each network's mean over its programmings, ± the "
        "half-width of the 95% Student-t interval over seeds (n = seeds), with σp, the standard deviation over "
        "programmings within one network (pooled over seeds). A drop is that network's digital test accuracy − "
        "its accuracy (positive: a loss), averaged over seeds, ± its 95% interval over seeds; a drop Δ below 0 "
        "means a method loses less than the reference. p-values: two-sided "
        "Welch t-test over the per-seed numbers of a method against SGD (n = seeds each), not corrected for the "
        f"{max(0, len(methods) - 1)} methods × times compared.",
        "",
        "Measured by: "
        + (
            ", ".join(
                f"the `{b}` backend ({n} rows)"
                for b, n in sorted(Counter(r.get("backend") for r in rows).items(), key=lambda kv: str(kv[0]))
            )
            or "nothing yet"
        )
        + ".",
        "",
        "## Methods",
        "",
        *_method_lines(out, methods, settings),
        "",
    ]
    for preset, _ in s.presets:
        if not any(r["preset"] == preset for r in summary):
            lines += [f"## `{preset}`", "", "Not measured yet.", ""]
            continue
        sub = [r for r in summary if r["preset"] == preset]
        acc_plot = plot_accuracy_vs_time(
            sub, out / f"accuracy_vs_time_{preset}.png", preset=preset, rows=[r for r in rows if r["preset"] == preset]
        )
        drop_plot = plot_drops(sub, preset, out / f"drop_{preset}.png", order)
        rank = {name: i for i, name in enumerate(order)}  # (markdown_table lists runs as it meets them)
        in_order = sorted(sub, key=lambda r: rank.get(r["run"], len(rank)))
        lines += [
            f"## `{preset}`",
            "",
            "### Accuracy (mean ± 95% CI over seeds, σp within a network)",
            "",
            markdown_table(in_order, preset),
            "",
            "### Drop from digital accuracy (mean ± 95% CI over seeds)",
            "",
            markdown_table(in_order, preset, quantity="drop"),
            "",
            "### Spread: within a network (σp, over programmings) and between networks (σseeds, of the seed means), pp",
            "",
            seed_spread_table(sub, preset, order),
            "",
            "### Against SGD: difference in pp and Welch p over seeds, on accuracy and on drop",
            "",
            seed_test_table(tests, preset, order) if tests else "SGD not measured yet.",
            "",
            *(
                [
                    "### Against HWA (`hwa`, hardware-aware training for PCM): difference in pp and Welch p over "
                    "seeds, on accuracy and on drop",
                    "",
                    seed_test_table(hwa_tests, preset, [m for m in order if m != HWA_BASELINE]),
                    "",
                ]
                if hwa_tests
                else []
            ),
            f"![accuracy vs time]({acc_plot.name})",
            "",
            f"![drop per method]({drop_plot.name})",
            "",
        ]
    lines += _wall_time_lines(timings, methods, settings)
    path = out / REPORT
    path.write_text("\n".join(lines))
    return path


def _wall_time_lines(timings: list[dict], methods: Sequence[StudyMethod], settings: StudySettings) -> list[str]:
    """Each invocation (start, expected and measured wall time), then every stage summed over them."""
    lines = [
        "## Wall time",
        "",
        *markdown_lines(
            ["invocation started", "expected (measured up front)", "wall time", "runs trained"],
            [
                [
                    e["started"],
                    duration_text(e["expected_seconds"]),
                    duration_text(e["wall_seconds"]),
                    len(e["trained"]),
                ]
                for e in timings
            ],
        ),
    ]
    summed: dict[str, float] = {}
    for e in timings:
        for stage, seconds in e["stages"].items():
            summed[stage] = summed.get(stage, 0.0) + seconds
    presets = [p for p, _ in settings.presets]
    lines += [
        "",
        "Stages, summed over the invocations (a stage that reused finished work takes seconds):",
        "",
    ]
    stage_rows = []
    for m in methods:
        cells = [summed.get(f"train {m.label}")] + [summed.get(f"evaluate {m.label} on {p}") for p in presets]
        stage_rows.append([m.label, *("—" if c is None else duration_text(c) for c in cells)])
    lines += markdown_lines(["method", "train", *(f"evaluate {p}" for p in presets)], stage_rows)
    other = {k: v for k, v in summed.items() if not k.startswith(("train ", "evaluate "))}
    lines += [
        "",
        "Other stages: " + ", ".join(f"{k} {duration_text(v)}" for k, v in other.items()) + ".",
        "",
        f"Total over {len(timings)} invocation(s): {duration_text(sum(e['wall_seconds'] for e in timings))} "
        f"(every invocation's stages: {TIMINGS}).",
        "",
    ]
    return lines


def _subset(s: StudySettings) -> str:
    if s.train_limit is None and s.test_limit is None:
        return "full training and test splits"
    return f"{s.train_limit or 'all'} training and {s.test_limit or 'all'} test samples"
