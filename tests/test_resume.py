"""One resume mechanism: settings hashed and recorded (storage), used by train-or-reuse and analyze,
and checkpoints written atomically."""

import json

import numpy as np
import pytest
import torch

from analogsam import runs, storage, training


def test_matching_record_reads_back_only_work_done_with_the_same_settings(tmp_path):
    settings = {"seed": 0, "levels": (0.1, 0.2), "n": np.int64(3)}
    storage.write_json(tmp_path / "r.json", {"settings_hash": storage.settings_hash(settings), "value": 1.5})
    assert storage.matching_record(tmp_path / "r.json", {"n": 3, "levels": [0.1, 0.2], "seed": 0})["value"] == 1.5
    assert storage.matching_record(tmp_path / "r.json", {**settings, "seed": 1}) is None
    assert storage.matching_record(tmp_path / "missing.json", settings) is None
    (tmp_path / "broken.json").write_text('{"settings_hash": ')
    assert storage.matching_record(tmp_path / "broken.json", settings) is None


def test_jsonable_plain_types():
    value = storage.jsonable({"a": np.arange(3), "b": torch.tensor(2.5), "c": (np.float32(1.5), True), 4: None})
    assert value == {"a": [0, 1, 2], "b": 2.5, "c": [1.5, True], "4": None}
    json.dumps(value)


def test_safe_name():
    assert storage.safe_name("sam rho=0.05/seed 1") == "sam_rho_0.05_seed_1"


def test_checkpoint_is_written_atomically(digits_run):
    path = digits_run.path / "checkpoint.pt"
    assert path.exists() and not (digits_run.path / "checkpoint.pt.tmp").exists()
    assert torch.load(path, weights_only=True)["format"] == "analogsam-checkpoint-1"


def test_train_or_reuse_records_its_settings_and_reuses_only_the_same_run(digits, tmp_path, monkeypatch):
    kwargs = dict(model="mlp", data=digits, optimizer="sgd", epochs=1, batch_size=64, seed=0, progress=False)
    out = tmp_path / "sgd"
    first = training.train_or_reuse(out, **kwargs)
    record = json.loads((out / runs.REUSE_RECORD).read_text())
    assert record["settings"]["dataset"] == "digits" and record["settings"]["epochs"] == 1
    assert record["settings_hash"] == storage.settings_hash(record["settings"])
    assert record["checkpoint"] == storage.file_digest(out / "checkpoint.pt")

    trained = []
    real_train = training.train
    monkeypatch.setattr(training, "train", lambda **kw: trained.append(kw) or real_train(**kw))
    again = training.train_or_reuse(out, **{**kwargs, "progress": True})  # how progress shows is no setting
    assert trained == [] and again.metrics == first.metrics
    training.train_or_reuse(out, **{**kwargs, "seed": 1})  # another setting: trained again
    assert len(trained) == 1
    training.train_or_reuse(out, **{**kwargs, "seed": 1})
    assert len(trained) == 1
    torch.save({"not": "the recorded checkpoint"}, out / "checkpoint.pt")  # changed since it was recorded
    training.train_or_reuse(out, **{**kwargs, "seed": 1})
    assert len(trained) == 2


def test_train_or_reuse_always_trains_a_module_it_cannot_name(digits, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(training, "train", lambda **kw: calls.append(kw) or "trained")
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    for _ in range(2):
        assert training.train_or_reuse(tmp_path / "own", model=module, data=digits) == "trained"
    assert len(calls) == 2 and not (tmp_path / "own" / runs.REUSE_RECORD).exists()


@pytest.mark.parametrize(
    "bad", [{"seed": -1}, {"repeats": 0}, {"num_batches": 0}, {"batch_size": 0}, {"test_samples": 0}, {"seed": 1.5}]
)
def test_analyze_runs_checks_its_counts(digits_run, tmp_path, bad):
    from analogsam.errors import InvalidParameterError
    from analogsam.studies.flatness import analyze_runs

    name = next(iter(bad))
    with pytest.raises(InvalidParameterError, match=name):
        analyze_runs([digits_run.path], tmp_path / "out", progress=False, **bad)
