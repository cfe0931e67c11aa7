"""The architectures people download, on simulated PCM (issue 23): what the closing note shows.

1. Every architecture of ``tests/zoo_architectures.py`` (torchvision, timm and transformers
   constructors, small configs, random weights): its layer report's counts (analog layers, tiles,
   parameters digital by use), the engine, and its agreement with the digital network on PCM after
   1 s and 1 day (fast engine, one programming).
2. GPT-2 (a small config: 2 layers, 64 wide) trained for a few epochs on the characters of
   Debian's GPL-3 text, then its test perplexity over time on PCM (fast engine, 3 programmings).
3. The dilated TCN of tests/test_mapping_dilated.py against aihwkit's tiles: noise off (and
   converters off), the largest difference; noise on, the draw statistics of 300 forwards.

Run from the repository root (about ten minutes on one busy core):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo_report.py [--text /usr/share/common-licenses/GPL-3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import zoo_architectures as zoo  # noqa: E402
from conformance import compare_draws, repeated  # noqa: E402
from test_mapping_dilated import NOISE_OFF, _programmed, signals, tcn  # noqa: E402

from analogsam import evaluate  # noqa: E402
from analogsam.evaluation.settings import PassLayout  # noqa: E402
from analogsam.hardware import layer_report  # noqa: E402


def architectures() -> None:
    print(
        "| architecture | class | analog layers | tiles | digital by use (parameters) | engine | PCM agreement 1 s / 1 d |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, build in zoo.ZOO.items():
        model, x = build()
        rows = layer_report(model, "pcm", example_inputs=x)
        analog = [r for r in rows if r["placement"] == "analog"]
        tiles = sum(len(r["tiles"]) for r in analog)
        by_use = [n for r in rows for n in r["digital_by_use"]]
        shown = ", ".join(by_use[:3]) + (f", ... ({len(by_use)})" if len(by_use) > 3 else "")
        metric, points = zoo.evaluate_on_pcm(name, model, x)
        values = " / ".join(f"{p['value']:.3g}" for p in points) + (" (mse)" if metric == "mse" else "")
        engine = "fast" if rows.engine_reason is None and rows.refusal is None else f"NOT fast: {rows.engine_reason}"
        print(
            f"| {name} | {rows.network} | {len(analog)} | {tiles} | {len(by_use)}{': ' + shown if by_use else ''} "
            f"| {engine} | {values} |",
            flush=True,
        )


def gpt2_perplexity(text: str) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    from analogsam.data import load_text
    from analogsam.training import train

    data = load_text(text, seq_len=32, test_fraction=0.1)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=data.num_classes,
        n_positions=32,
        n_embd=64,
        n_layer=2,
        n_head=4,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
    )
    start = time.perf_counter()
    run = train(
        GPT2LMHeadModel(config),
        data,
        optimizer="adamw",
        lr=3e-3,
        epochs=6,
        batch_size=32,
        seed=0,
        metric="perplexity",
        progress=False,
    )
    print(
        f"\nGPT-2 ({sum(p.numel() for p in run.model.parameters()):,} parameters, vocabulary {data.num_classes}) "
        f"trained on {text} in {time.perf_counter() - start:.0f} s"
    )
    rows = evaluate(
        run,
        data.test.batches(256),
        "pcm",
        times="1s,1h,1d,30d,1y",
        repeats=3,
        layout=PassLayout(backend="fast"),
        metric="perplexity",
        progress=False,
    )
    print(f"digital test perplexity: {rows[0]['digital_value']:.3f}")
    print("| t | PCM perplexity, mean of 3 programmings | min | max |")
    print("|---|---|---|---|")
    for t in sorted({r["t_seconds"] for r in rows}):
        values = [r["value"] for r in rows if r["t_seconds"] == t]
        print(f"| {t:g} s | {sum(values) / len(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    print(f"(backend: {rows[0]['backend']})")


def dilated_conformance() -> None:
    model, x = tcn(), signals()
    analog, engine = _programmed("ideal", NOISE_OFF)
    with torch.no_grad():
        digital, theirs, ours = model(x), analog(x), engine(x)
    print("\nDilated TCN (Conv1d dilations 2, 3 grouped, 4 strided), against aihwkit's tiles:")
    print(
        f"noise and converters off: max |fast - aihwkit| = {float((ours - theirs).abs().max()):.2e}, "
        f"max |fast - digital| = {float((ours - digital).abs().max()):.2e} (outputs up to {float(digital.abs().max()):.2f})"
    )
    analog, engine = _programmed("ideal")
    with torch.no_grad():
        theirs, ours = analog(x), engine(x)
    differ = (ours - theirs).abs()
    print(
        f"8-bit DAC/ADC (ideal): max |fast - aihwkit| = {float(differ.max()):.4f} "
        f"(one ADC step {2 * 10 / 254:.4f}); outputs differing: {float((differ > 1e-5).float().mean()):.2%}"
    )
    analog, engine = _programmed("pcm", {"compensation.drift": "none"})
    stats = compare_draws(repeated(lambda: analog(x), 300), repeated(lambda: engine(x), 300))
    print(
        f"PCM noise on, 300 draws each, {stats.mean_a.numel()} outputs: max |mean difference| = "
        f"{stats.max_z:.2f} standard errors, variance ratio fast/aihwkit = {stats.variance_ratio:.3f}, "
        f"median |std_fast / std_aihwkit - 1| = {stats.median_relative_std(min_var=1e-6):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default="/usr/share/common-licenses/GPL-3", help="the text GPT-2 is trained on")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: zoo, gpt2, dilated")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(1)
    if "zoo" not in skip:
        architectures()
    if "gpt2" not in skip:
        gpt2_perplexity(args.text)
    if "dilated" not in skip:
        dilated_conformance()


if __name__ == "__main__":
    main()
