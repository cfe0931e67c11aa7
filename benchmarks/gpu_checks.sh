#!/usr/bin/env bash
# The GPU checks of issue 13 in one run (about 8 minutes on one GPU), printing every number:
# the CUDA tests, then the GPU benchmark (sweep / digital GPU forward for ResNet-20, vit-tiny and
# LeNet-5, the GPU sweep against the CPU fast path, the noise-off CUDA-vs-CPU count).
#
#   bash benchmarks/gpu_checks.sh [WHEEL_FOLDER]
#
# Run from the repository root, on a machine whose python3 has a CUDA torch (2.10-2.12 for
# aihwkit 1.1.0). WHEEL_FOLDER (optional): wheels of what that python lacks (aihwkit and its
# needs), installed with `pip install --no-index --no-deps` into a scratch folder first.
# Environment: PYTHON (default python3), REPEATS (programmings per benchmark sweep, default 10),
# CUDA_TESTS (the test files to run, default the evaluation's device tests and the generator's
# CPU = GPU test).
set -u -o pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
REPEATS=${REPEATS:-10}
CUDA_TESTS=${CUDA_TESTS:-tests/test_device_evaluation.py tests/test_fast_noise.py::test_a_gpu_draws_the_cpu_kernels_numbers}
export PYTHONUNBUFFERED=1
status=0

if [ "$#" -ge 1 ] && [ -n "$1" ]; then
    site=$(mktemp -d /tmp/gpu-checks-site.XXXXXX)
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$1"/*.whl \
        || { echo "error: could not install the wheels of $1" >&2; exit 2; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== machine"
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"
"$PYTHON" - <<'EOF' || exit 2
import torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")
if not torch.cuda.is_available():
    raise SystemExit("error: torch sees no CUDA GPU here: these checks need one")
print(f"GPU: {torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB; "
      f"{torch.get_num_threads()} CPU threads")
import aihwkit
print(f"aihwkit {aihwkit.__version__}")
EOF

echo
echo "== CUDA tests: $CUDA_TESTS"
# -rs lists skipped tests: on this machine none of the CUDA ones may skip
timeout 150 "$PYTHON" -m pytest -q -p no:cacheprovider -rs $CUDA_TESTS || status=1

echo
echo "== GPU benchmark ($REPEATS repeats x 5 times per model)"
timeout 330 "$PYTHON" benchmarks/bench_evaluate.py --device cuda --models lenet5,resnet20,vit-tiny --repeats "$REPEATS" || status=1

echo
[ "$status" -eq 0 ] && echo "gpu_checks: every step passed" || echo "gpu_checks: a step FAILED (see above)"
exit "$status"
