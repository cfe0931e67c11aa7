"""SAM-step throughput of data-parallel training: N CPU processes (gloo, DDP) against one process.

    python benchmarks/bench_ddp.py                          # LeNet-5, global batch 128, 1 vs 2 processes
    python benchmarks/bench_ddp.py --model resnet20 --processes 4 --threads 1 --steps 30

Every configuration trains the same model with SAM on the same global batch (``--batch`` random inputs
per step, Fashion-MNIST-sized for LeNet-5, CIFAR-sized for ResNet-20): one process alone (no process
group, what ``analogsam train`` does without torchrun), and N processes in a gloo group, each taking
``batch / N`` of it with its own SAM perturbation and an all-reduce of the second-pass gradient
(:mod:`analogsam.distributed`). Each process uses ``--threads`` torch threads, so N processes use N times
the cores of one. Throughput is global samples per second over ``--steps`` timed steps after ``--warmup``
untimed ones (rank 0's wall clock, between barriers). The ratio is a scaling figure, not a target: it
says what the all-reduce and the smaller per-process batch cost on this machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from analogsam.distributed import join, wrap
from analogsam.models import build_model
from analogsam.optim import build_method

MODELS = {
    "lenet5": ({"name": "lenet5", "in_channels": 1, "num_classes": 10, "input_size": 28}, (1, 28, 28)),
    "resnet20": ({"name": "resnet20", "in_channels": 3, "num_classes": 10}, (3, 32, 32)),
    "mlp": ({"name": "mlp", "in_channels": 1, "num_classes": 10, "input_size": 28}, (1, 28, 28)),
}


def _steps_per_second(model_name: str, batch: int, steps: int, warmup: int, distributed: bool) -> float:
    spec, shape = MODELS[model_name]
    torch.manual_seed(0)
    model = build_model(spec)
    model.train()
    method = build_method("sam", model, lr=0.05)
    if distributed:
        method.distribute(wrap(model, join("cpu")))
    generator = torch.Generator().manual_seed(1 + (dist.get_rank() if distributed else 0))
    x = torch.randn(batch, *shape, generator=generator)
    y = torch.randint(0, 10, (batch,), generator=generator)
    for _ in range(warmup):
        method.train_step(x, y)
    if distributed:
        dist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        method.train_step(x, y)
    if distributed:
        dist.barrier()
    return steps / (time.perf_counter() - start)


def _replica(rank: int, world: int, port: int, args, results) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo")
    rate = _steps_per_second(args.model, args.batch // world, args.steps, args.warmup, distributed=True)
    if rank == 0:
        results.put(rate)
    dist.barrier()
    dist.destroy_process_group()


def _single(args, results) -> None:
    torch.set_num_threads(args.threads)
    results.put(_steps_per_second(args.model, args.batch, args.steps, args.warmup, distributed=False))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(args) -> tuple[float, float]:
    """(samples/s of one process, samples/s of ``args.processes`` processes), each in fresh processes."""
    context = mp.get_context("spawn")
    results = context.Queue()
    single = context.Process(target=_single, args=(args, results))
    single.start()
    one = results.get(timeout=args.timeout)
    single.join()
    port = _free_port()
    replicas = [
        context.Process(target=_replica, args=(rank, args.processes, port, args, results))
        for rank in range(args.processes)
    ]
    for p in replicas:
        p.start()
    many = results.get(timeout=args.timeout)
    for p in replicas:
        p.join()
    return one * args.batch, many * args.batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="lenet5")
    parser.add_argument("--batch", type=int, default=128, help="global batch of one step (default: 128)")
    parser.add_argument("--processes", type=int, default=2, help="processes of the DDP run (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default: 1)")
    parser.add_argument("--steps", type=int, default=20, help="timed SAM steps (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for a result")
    args = parser.parse_args()
    if args.batch % args.processes:
        parser.error(f"--batch {args.batch} must be a multiple of --processes {args.processes}")
    one, many = measure(args)
    print(
        f"SAM step, {args.model}, global batch {args.batch}, {args.threads} thread(s) per process, "
        f"{args.steps} steps after {args.warmup} warm-up, CPU cores seen: {os.cpu_count()}"
    )
    print(f"  1 process:            {one:9.1f} samples/s")
    print(f"  {args.processes} processes (gloo): {many:9.1f} samples/s")
    print(f"  ratio {args.processes} / 1:          {many / one:9.2f}")


if __name__ == "__main__":
    main()
