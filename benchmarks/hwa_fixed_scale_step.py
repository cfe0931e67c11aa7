"""Why aihwkit's fixed-scale HWA trains its first layers slowly: one step's gradient per layer (issue 21).

    python benchmarks/hwa_fixed_scale_step.py --out docs/hwa-conformance/fixed-scale.md

The digits MLP (64-256-128-10) is trained 3 epochs by aihwkit's own hardware-aware training with the
``pcm`` preset's ``InferenceRPUConfig`` as it is (remap NONE: each tile's weight scale α stays the one of
the conversion while the weights grow) and ``AnalogSGD``. At that state, on one batch of 256, each
layer's weight gradient is taken four ways, averaged over ``--draws`` forwards (the tiles' noise):

- aihwkit: ``AnalogSGD`` (lr 0.01, no momentum) on the trained tiles (the same tile weights and α),
  gradient = (W before − W after) / lr;
- analogsam ``remap=False``: the same weights and the same α (``fixed_alpha``), straight through;
- analogsam ``remap=False`` with ``zero_saturated_gradients``: aihwkit's C++ tiles' rule
  (``handle_output_bound``): no gradient back to the inputs behind an output whose read-out, in units of
  the tile's normalised weights after noise management's rescaling, reached 0.999 out_bound;
- digital: the plain layer's gradient at the same weights.

The table gives |digital gradient| / |gradient| (1: as the digital step) and the cosine to the digital
gradient, per layer.
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
from pathlib import Path

import torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="aihwkit HWA epochs before the step (default: 3)")
    parser.add_argument("--draws", type=int, default=20, help="forwards averaged per method (default: 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    args = parser.parse_args(argv)

    from aihwkit.nn.conversion import convert_to_analog, convert_to_digital
    from aihwkit.optim import AnalogSGD

    from analogsam.data import load_dataset
    from analogsam.hardware import presets as devices
    from analogsam.hardware.hwa import attach_hardware_aware
    from analogsam.hardware.mapping import map_to_tiles
    from analogsam.models import build_model, make_spec

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    data = load_dataset("digits")
    spec = make_spec("mlp", in_channels=data.in_channels, num_classes=data.num_classes, input_size=data.input_size)
    config = devices.load("pcm").rpu_config
    torch.manual_seed(args.seed)
    analog = convert_to_analog(map_to_tiles(build_model(spec)), config())
    sgd = AnalogSGD(analog.parameters(), lr=0.05, momentum=0.9)
    sgd.regroup_param_groups(analog)
    for epoch in range(args.epochs):
        analog.train()
        for x, y, _ in data.train.batches(32, shuffle=True, seed=args.seed * 100_003 + epoch, with_indices=True):
            sgd.zero_grad()
            torch.nn.functional.cross_entropy(analog(x), y).backward()
            sgd.step()
    alphas = [t.get_mapping_scales().detach().clone() for t in analog.analog_tiles()]
    digital = build_model(spec)
    digital.load_state_dict(convert_to_digital(copy.deepcopy(analog)).state_dict())
    x, y = next(iter(data.train.batches(256, shuffle=True, seed=99, with_indices=True)))[:2]
    names = [n for n, _ in digital.named_parameters() if n.endswith("weight")]
    digital.zero_grad()
    torch.nn.functional.cross_entropy(digital(x), y).backward()
    reference = {n: p.grad.clone() for n, p in digital.named_parameters() if n in names}
    lr = 0.01

    def aihwkit_gradient():
        a = convert_to_analog(map_to_tiles(copy.deepcopy(digital)), config())
        for tile, alpha in zip(a.analog_tiles(), alphas):  # the trained tiles: their weights and α
            w, b = tile.get_weights(apply_weight_scaling=True)
            tile.set_mapping_scales(alpha.clone())
            tile.set_weights(w / alpha.view(-1, 1), b, apply_weight_scaling=False)
        a.train()
        step = AnalogSGD(a.parameters(), lr=lr)
        step.regroup_param_groups(a)
        before = convert_to_digital(copy.deepcopy(a)).state_dict()
        step.zero_grad()
        torch.nn.functional.cross_entropy(a(x), y).backward()
        step.step()
        after = convert_to_digital(copy.deepcopy(a)).state_dict()
        return {n: (before[n] - after[n]) / lr for n in names}

    def analogsam_gradient(zero_saturated: bool):
        m = copy.deepcopy(digital)
        attach_hardware_aware(m, {"preset": "pcm", "remap": False, "zero_saturated_gradients": zero_saturated})
        for layer, alpha in zip([m_ for m_ in m.modules() if hasattr(m_, "hwa_tiles")], alphas):
            layer.hwa_tiles.fixed_alpha = {(0, 0): alpha.view(-1, 1).expand(layer.weight.shape[0], 1).clone()}
        m.train()
        m.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        return {n: p.grad.clone() for n, p in m.named_parameters() if n in names}

    methods = {
        "aihwkit `AnalogSGD` (C++ tiles)": aihwkit_gradient,
        "analogsam `remap=False`": lambda: analogsam_gradient(False),
        "analogsam `remap=False`, `zero_saturated_gradients`": lambda: analogsam_gradient(True),
    }
    tile_max = [float(t.get_weights(apply_weight_scaling=False)[0].abs().max()) for t in analog.analog_tiles()]
    lines = [
        f"# One step at aihwkit's fixed-scale HWA state (digits MLP, pcm, {args.epochs} epochs)",
        "",
        f"`python benchmarks/hwa_fixed_scale_step.py{' ' + ' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        "Tile weights at that state, max |W/α| per layer (1 = the conductance range): "
        + ", ".join(f"{v:.1f}" for v in tile_max)
        + f". Gradients averaged over {args.draws} forwards; |digital| / |gradient| (1: the digital step) and "
        "cosine to the digital gradient, per layer.",
        "",
        "| method | " + " | ".join(f"{n}: ratio, cos" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for label, fn in methods.items():
        draws = [fn() for _ in range(args.draws)]
        mean = {n: torch.stack([d[n] for d in draws]).mean(0) for n in names}
        cells = [
            f"{float(reference[n].norm() / mean[n].norm()):.2f}, "
            f"{float(torch.nn.functional.cosine_similarity(mean[n].flatten(), reference[n].flatten(), 0)):.2f}"
            for n in names
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
