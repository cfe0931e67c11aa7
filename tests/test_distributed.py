"""Data-parallel training (analogsam.distributed, train(distributed=True)): two CPU processes in a gloo
group against a single process that computes the same algorithm on the two shards, written out here.

SGD: the step takes the mean of the shards' gradients. SAM: each shard perturbs with its own gradient,
ε_k = ρ g_k / ‖g_k‖ (the m-sharpness of Foret et al. 2021, arXiv 2010.01412, sec. 4), the gradients at
w + ε_k are averaged, the base optimizer steps. SAF: each shard keeps the logits of its own samples.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from analogsam.data import ArrayDataset, DatasetSplits
from analogsam.distributed import (
    DistributedSetupError,
    per_replica_batch,
    shard_batches,
    shard_indices,
)
from analogsam.errors import InvalidParameterError
from analogsam.optim import OPTIMIZER_NAMES
from analogsam.training import train

pytestmark = pytest.mark.slow  # starts processes (torch.distributed over gloo)

WORLD = 2
SEED = 3
SAMPLES = 45  # odd: one shard is padded with a sample of the other
GLOBAL_BATCH = 16  # 8 per replica: batches of 8, 8, 7 on each shard
EPOCHS = 3
SGD = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
RHO = 0.05
SAF = dict(saf_history=1, saf_start=1, saf_lambda=0.3, saf_tau=2.0)
TOLERANCE = dict(rtol=1e-5, atol=1e-6)

# Each run the replicas train: (name, optimizer, hyperparameters, model with BatchNorm).
RUNS = [
    ("sgd", "sgd", {}, False),
    ("sam", "sam", {"rho": RHO}, False),
    ("saf", "saf", SAF, False),
    ("mesa", "mesa", {"mesa_start": 0}, True),
    ("asam", "asam", {}, True),
    ("adversarial", "adversarial", {"attack_steps": 2}, True),
    ("adversarial_noise_only", "adversarial", {"beta": 0.0, "zeta_forward": 0.1}, False),
    ("noise", "noise", {}, False),
    ("rwp", "rwp", {}, True),
    # quantized: LIQ's clips are initialised from a batch, which differs per replica unless synchronised
    ("saq_w4a4", "saq", {"quantize": "w4a4", "rho": RHO}, False),
    ("sgd_w4a4", "sgd", {"quantize": "w4a4"}, True),
]


def _data() -> DatasetSplits:
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(SAMPLES + 20, 6, generator=generator)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()
    empty = ArrayDataset(x[:0], y[:0])
    return DatasetSplits(
        "blobs", ArrayDataset(x[:SAMPLES], y[:SAMPLES]), empty, ArrayDataset(x[SAMPLES:], y[SAMPLES:]), 3, (6,)
    )


def _model(batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    middle = [nn.BatchNorm1d(8)] if batchnorm else []
    return nn.Sequential(nn.Linear(6, 8), *middle, nn.Tanh(), nn.Linear(8, 3))


def _leave(rank: int, folder: Path) -> None:
    """Leave the group with rank 0 last: it hosts the store, and a replica still tearing down its gloo
    threads when rank 0's process exits is aborted ("terminate called without an active exception",
    exit -6: one run in five here with a barrier alone). The others say through a file that they left."""
    torch.distributed.barrier()
    if rank != 0:
        torch.distributed.destroy_process_group()
        (folder / f"left-rank{rank}").touch()
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all((folder / f"left-rank{r}").exists() for r in range(1, WORLD)):
        time.sleep(0.05)
    torch.distributed.destroy_process_group()


def _replica(rank: int, port: int, folder: str) -> None:
    """One process of the group: every run of RUNS, its final weights (and MESA's EMA) saved per rank."""
    try:
        os.environ.update(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank)
        )
        torch.set_num_threads(1)
        torch.distributed.init_process_group("gloo", rank=rank, world_size=WORLD)
        data = _data()
        for name, optimizer, hparams, batchnorm in RUNS:
            settings = SGD if optimizer != "adamw" else {}
            run = train(
                _model(batchnorm),
                data,
                optimizer=optimizer,
                epochs=EPOCHS,
                batch_size=GLOBAL_BATCH,
                schedule="constant",
                seed=SEED,
                progress=False,
                distributed=True,
                out=Path(folder) / name,
                **settings,
                **hparams,
            )
            saved = {"weights": run.model.state_dict(), "metrics": run.metrics}
            torch.save(saved, Path(folder) / f"{name}-rank{rank}.pt")
        _mesa_ema(rank, folder)
        _leave(rank, Path(folder))
    except BaseException:
        (Path(folder) / f"error-rank{rank}.txt").write_text(traceback.format_exc())
        raise


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> Path:
    """Run the two replicas once; the folder holds what each saved."""
    folder = tmp_path_factory.mktemp("ddp")
    port = _free_port()
    context = mp.get_context("spawn")
    processes = [context.Process(target=_replica, args=(rank, port, str(folder))) for rank in range(WORLD)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=240)
    alive = [p for p in processes if p.is_alive()]
    for p in alive:
        p.kill()
    errors = "\n".join(f.read_text() for f in sorted(folder.glob("error-rank*.txt")))
    assert not alive, f"replicas still running after 240 s\n{errors}"
    assert [p.exitcode for p in processes] == [0] * WORLD, errors
    return folder


def _saved(folder: Path, name: str, rank: int) -> dict:
    return torch.load(folder / f"{name}-rank{rank}.pt", weights_only=True)


# -- the single-process references --------------------------------------------------------------------


def _shard_steps(data: DatasetSplits, epoch: int):
    """Per step, each shard's (inputs, targets, indices), as the replicas draw them."""
    local = per_replica_batch(GLOBAL_BATCH, WORLD)
    shards = [shard_indices(len(data.train), rank, WORLD, SEED) for rank in range(WORLD)]
    return zip(*(shard_batches(data.train, shard, local, seed=SEED * 100_003 + epoch) for shard in shards))


def _gradient(model: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.parameters())))


def _average_and_step(model, optimizer, gradients: list[list[torch.Tensor]]) -> None:
    for p, *per_shard in zip(model.parameters(), *gradients):
        p.grad = sum(per_shard) / len(per_shard)
    optimizer.step()


def _reference(optimizer_name: str) -> dict[str, torch.Tensor]:
    data = _data()
    model = _model()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), **SGD)
    history = [{} for _ in range(WORLD)]  # SAF: per shard, {(sample index, epoch): its logits}
    for epoch in range(EPOCHS):
        for batches in _shard_steps(data, epoch):
            gradients, recorded = [], []
            for shard, (x, y, idx) in enumerate(batches):
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                if optimizer_name == "sam":
                    g = _gradient(model, loss)
                    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in g]))
                    eps = [RHO * t / (norm + 1e-12) for t in g]
                    with torch.no_grad():
                        for p, e in zip(model.parameters(), eps):
                            p.add_(e)
                    gradients.append(_gradient(model, F.cross_entropy(model(x), y)))
                    with torch.no_grad():
                        for p, e in zip(model.parameters(), eps):
                            p.sub_(e)
                    continue
                if optimizer_name == "saf" and epoch >= SAF["saf_start"]:
                    past = epoch - SAF["saf_history"]
                    keep = [i for i, j in enumerate(idx.tolist()) if (j, past) in history[shard]]
                    if keep:
                        reference = torch.stack([history[shard][(idx[i].item(), past)] for i in keep])
                        tau = SAF["saf_tau"]
                        kl = F.kl_div(
                            F.log_softmax(logits[keep] / tau, -1),
                            F.log_softmax(reference / tau, -1),
                            reduction="batchmean",
                            log_target=True,
                        )
                        loss = loss + SAF["saf_lambda"] * tau**2 * kl
                gradients.append(_gradient(model, loss))
                recorded.append((shard, idx, logits.detach()))
            _average_and_step(model, optimizer, gradients)
            for shard, idx, logits in recorded:  # after the step, as SAF records
                for j, row in zip(idx.tolist(), logits):
                    history[shard][(j, epoch)] = row
    return model.state_dict()


@pytest.mark.parametrize("name", ["sgd", "sam", "saf"])
def test_replicas_equal_one_process_computing_the_same_algorithm_on_the_shards(replicas, name):
    expected = _reference(name)
    for rank in range(WORLD):
        weights = _saved(replicas, name, rank)["weights"]
        assert weights.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(weights[key], value, **TOLERANCE, msg=f"{name}, rank {rank}, {key}")


@pytest.mark.parametrize("name", [run[0] for run in RUNS])
def test_every_method_keeps_the_replicas_identical(replicas, name):
    """The averaged gradients (and, for MESA, rank 0's BatchNorm buffers) leave every replica with the
    same weights and the same logs; a method whose gradient escaped the all-reduce would diverge."""
    first, second = (_saved(replicas, name, rank) for rank in range(WORLD))
    for key, value in first["weights"].items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # per replica between broadcasts (DDP broadcasts rank 0's at each forward)
        assert torch.equal(value, second["weights"][key]), f"{name}: {key} differs between the replicas"
    assert first["metrics"] == second["metrics"]


def test_the_mesa_ema_model_stays_identical_across_replicas(replicas):
    """MESA's EMA is a function of the synced weights and rank 0's buffers (a BatchNorm model here)."""
    emas = [torch.load(replicas / f"ema-rank{rank}.pt", weights_only=True) for rank in range(WORLD)]
    assert emas[0].keys() == emas[1].keys()
    for key in emas[0]:
        assert torch.equal(emas[0][key], emas[1][key]), f"EMA {key} differs between the replicas"


def _mesa_ema(rank: int, folder: str) -> None:
    """MESA through the method interface (train() keeps only the trained model), saving its EMA model."""
    from analogsam.distributed import join, wrap
    from analogsam.optim import build_method

    replicas = join("cpu")  # the group that is open already
    data, model = _data(), _model(batchnorm=True)
    method = build_method("mesa", model, epochs=2, mesa_start=0, **SGD)
    method.distribute(wrap(model, replicas))
    shard = shard_indices(len(data.train), rank, WORLD, SEED)
    for epoch in range(2):
        method.begin_epoch(epoch)
        for x, y, idx in shard_batches(data.train, shard, 8, seed=epoch):
            method.train_step(x, y, idx)
    torch.save(method.ema_model.state_dict(), Path(folder) / f"ema-rank{rank}.pt")


def test_only_rank_zero_writes_the_run_folder_and_the_log_sums_every_shard(replicas):
    folder = replicas / "sgd"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt", "config.json", "log.csv"]
    config = torch.load(folder / "checkpoint.pt", weights_only=True)["config"]
    assert config["distributed"] == {"world_size": 2, "backend": "gloo", "batch_size_per_replica": 8}
    metrics = _saved(replicas, "sgd", 0)["metrics"]
    assert len(metrics) == EPOCHS
    # Accuracy over both padded shards: a multiple of 1/46 (45 samples, one drawn by both replicas).
    for row in metrics:
        assert math.isclose(row["train_accuracy"] * 46, round(row["train_accuracy"] * 46), abs_tol=1e-9)


# -- the pieces, in one process -----------------------------------------------------------------------


@pytest.mark.parametrize("n, world", [(45, 2), (10, 3), (7, 7), (3, 4)])
def test_shards_are_equal_in_length_and_cover_every_sample(n, world):
    shards = [shard_indices(n, rank, world, seed=5) for rank in range(world)]
    assert {len(s) for s in shards} == {math.ceil(n / world)}
    together = torch.cat(shards).tolist()
    assert set(together) == set(range(n))
    assert len(together) - len(set(together)) == math.ceil(n / world) * world - n  # only the padding repeats
    assert torch.equal(shards[0], shard_indices(n, 0, world, seed=5))  # the seed alone decides


def test_the_seed_deals_the_shards():
    assert not torch.equal(shard_indices(45, 0, 2, seed=5), shard_indices(45, 0, 2, seed=6))


def test_the_global_batch_must_split_evenly():
    assert per_replica_batch(128, 4) == 32
    with pytest.raises(InvalidParameterError, match="multiple of 3"):
        per_replica_batch(128, 3)


def test_distributed_without_a_launcher_says_how_to_launch(monkeypatch):
    for variable in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(DistributedSetupError, match="torchrun --nproc-per-node") as caught:
        train(_model(), _data(), epochs=1, progress=False, distributed=True)
    assert "\n" not in str(caught.value)


def test_python_dash_m_analogsam_is_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "analogsam", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert done.returncode == 0, done.stderr
    assert "--device" in done.stdout and "global batch" in done.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_every_optimizer_trains_on_cuda(optimizer):
    hparams = {"saf": {"saf_history": 1, "saf_start": 1}, "mesa": {"mesa_start": 0}}.get(optimizer, {})
    run = train(
        _model(batchnorm=True),
        _data(),
        optimizer=optimizer,
        epochs=2,
        batch_size=16,
        progress=False,
        device="cuda",
        **hparams,
    )
    assert all(p.device.type == "cuda" for p in run.model.parameters())
    assert all(math.isfinite(row["train_loss"]) for row in run.metrics)
