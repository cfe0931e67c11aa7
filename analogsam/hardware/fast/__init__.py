"""The fast engine: a seeded, batched replay of aihwkit's C++ analog tile forward pass, for evaluation.

Why it exists. aihwkit's C++ ``InferenceTile`` (``InferenceRPUConfig``) computes each input vector
on its own (``RPUAbstract::forwardMatrix`` loops ``ForwardBackwardPassIOManaged::forwardVector``)
and draws its forward noise from its own clock-seeded generator, which Python cannot seed: a
Monte-Carlo sweep over it is slow and not reproducible. :class:`FastAnalogForward` re-implements
the same arithmetic in batched torch operations and compiled kernels and owns its random numbers
(:mod:`.noise`: a counter-based generator, each number addressed by seed, tile, draw site, sample
and element, generated inside the kernels where it is used).

Why not aihwkit's own torch tiles. ``TorchInferenceRPUConfig`` (aihwkit 1.1.0,
``simulator/tiles/torch_tile.py`` and ``analog_mvm.py``) is seedable through torch, but it is a
different model of the tile, not a replay of the C++ one, and it refuses settings the shipped
presets use: ``AnalogMVM.check_support`` rejects any output-referred weight noise
(``forward.w_noise > 0`` or a ``w_noise_type`` other than NONE, so neither PCM_READ nor
ADDITIVE_CONSTANT read noise: presets ``hwa-standard``, ``rram-wan2022``) and ``forward.ir_drop > 0``
(``hwa-standard``), besides the output non-linearity, slope calibration, voltage offsets, series
resistance and polarity read asymmetry, the AVERAGE_ABS_MAX and ABS_MAX_NP_SUM noise managements
and SHIFT bound management; ``TorchSimulatorTile`` rejects an analog bias. Where it does run, its
iterative bound management differs from the C++ tile's: it tests the whole batch at once
(``_finalize_output``: one ``.all()`` over every output) and recomputes every vector at half scale
when any one saturates, where the C++ tile repeats only the vectors that saturated, and it always
tests both bounds (no ``bm_test_negative_bound``). Its numbers would then depend on which inputs
share a batch, and would not be the C++ tiles' numbers that the rest of analogsam reports.

What is reproduced. Programming and drift are aihwkit's noise models, on torch's generator: either
aihwkit's own tile-by-tile ``program_analog_weights`` / ``drift_analog_weights``, or (what the fast
backend of ``evaluate`` does) :mod:`analogsam.hardware.programming`, the same formulas applied to
the concatenated conductances of every tile at once; :meth:`FastAnalogForward.sync` reads
each tile's current weights and digital periphery and recomputes the drift-compensation factor
through this engine's own seeded forward. The forward follows ``src/rpucuda/rpu_forward_backward_pass.cpp``
(see :mod:`.tile`), then the digital periphery of ``InferenceTile`` and the layer structure
(:mod:`.layers`). The IO parameters are read back from the C++ tile, i.e. what the tile really
uses, not the Python ``rpu_config``, which may have been edited after conversion without effect.
Every aihwkit setting is declared reproduced or refused in the allow-list of :mod:`.support`; a
refused setting at a non-default value, a field the list does not know, or an aihwkit version
other than :data:`AIHWKIT_VERSIONS` makes :func:`unsupported_reason` name it: settings are refused,
never approximated.

The exactness contract. With every noise source off the result equals aihwkit's up to the
summation order of the float32 dot products (OpenBLAS ``sgemv`` there, numpy's OpenBLAS ``sgemm``
here, a relative difference of about 1e-7): the ADC then gives the same level except when a
pre-ADC value lies within that distance of a rounding boundary, which moves one output by one ADC
step about once per million outputs (``benchmarks/bench_evaluate.py`` counts them on LeNet-5).
Every other operation is done in the C++ order with the same float32 roundings. With noise on,
the outputs have aihwkit's distribution (``tests/test_fastpath.py`` compares means and variances).
The compiled kernels of :mod:`.kernels` (``fused=True``) give bit-identical results to the torch
operations they replace, and so does the one-pass kernel of a grouped or depthwise convolution
(:mod:`.grouped`, :mod:`.grouped_kernels`) to running its groups' tiles one by one.

The seeding contract. Every random number of the forward and of the drift-compensation read-outs
is a function of the seed of the generator given to :meth:`FastAnalogForward.sync` and of its
address (:mod:`.noise`): the tile, the layer call, the draw site and bound-management round, the
sample's index among the samples read since the sync, and the element. The same seed, the same
weights and the same samples in the same order give bit-identical outputs whatever the batch size,
the processing chunks, the thread count or the stacking of states (``tests/test_fast_noise.py``),
and the same numbers on the CPU and a GPU. Programming and drift noise come from torch's global
generator, as aihwkit draws them.

On a GPU (``FastAnalogForward(..., device="cuda")``). Programming and drift (all tiles at once,
:mod:`analogsam.hardware.programming`) run on the CPU, where aihwkit's tiles hold the weights (its
wheels have no CUDA build); :meth:`FastAnalogForward.sync` copies each tile's weights and periphery to the device,
the digital modules run as copies there, and the forward runs the torch operations (the compiled
kernels and numpy's products are CPU code) in full float32 (no TF32), drawing from CUDA
generators (only their seeds are read). The engine's generator draws the same numbers as on the
CPU, so the outputs equal the CPU's up to the summation order of the products (the ADC contract
above), noise on or off. Not yet run on a GPU: the CUDA tests (``tests/test_device_evaluation.py``)
skip without one.
Many states per pass. :meth:`FastAnalogForward.capture` keeps the state a sync left (a programming
drifted to one time, with its noise seed); :meth:`FastAnalogForward.forward_stacked` runs the same
inputs under many captured states in one forward, the first analog layer quantizing the inputs
once for all of them, every state drawing its own numbers as its own forward would
(:mod:`.stacked`): on a GPU as one batch of every state's samples (each state's outputs equal its
one-by-one forward's up to the summation order of the digital layers), on the CPU state by state
after the shared first layer (bit-identical to one by one). It is not a second implementation: a
tile's forward (:meth:`.tile.Tile.forward_shared`, :meth:`.tile.Tile.forward_patches_shared`) and a
layer's call take a list of states, the one-state forward being the list of one; the sync's
drift-compensation read-outs run the same way, the tiles with the same settings as the states of
one read-out (:func:`.periphery.compensate`).

The pieces. :mod:`.tile` replays one tile's arithmetic (noise management, DAC, noise, ADC, bound
management); :mod:`.periphery` its digital periphery and drift compensation; :mod:`.patches` a
convolution's patches read from the image; :mod:`.products` the matrix products (the kernel
backend: OpenBLAS, an in-order chain for grouped layers, torch on a GPU); :mod:`.kernels` and
:mod:`.grouped_kernels` the compiled element-wise loops; :mod:`.noise` the random numbers;
:mod:`.layers` and :mod:`.grouped` the analog layers, which read the state's noise and any stacked
pass from the :class:`.context.ForwardContext` they are built with; :mod:`.stacked` the many-state
pass; :mod:`.engine` ties them together.
"""

from analogsam.hardware.fast.engine import FastAnalogForward
from analogsam.hardware.fast.support import (
    AIHWKIT_VERSIONS,
    FastPathUnsupported,
    aihwkit_version_reason,
    unsupported_reason,
)
from analogsam.hardware.fast.tile import IOSpec

__all__ = [
    "AIHWKIT_VERSIONS",
    "FastAnalogForward",
    "FastPathUnsupported",
    "IOSpec",
    "aihwkit_version_reason",
    "unsupported_reason",
]
