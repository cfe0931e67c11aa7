"""`analogsam study faults --quick`: the whole pipeline on a tiny problem, its report, and a resume
that trains and measures nothing new."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from analogsam.cli import main
from analogsam.studies.faults import QUICK, FaultStudyError, fault_study, variants

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_quick_fault_study_reports_every_variant_and_resumes(tmp_path, capsys):
    out = tmp_path / "faults"
    assert main(["study", "faults", "--quick", "--out", str(out), "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "expected wall time of the work left, measured on this machine just now" in said

    labels = [v.label for v in variants(QUICK)]
    assert len(labels) == 12  # {standard, sparse} x {w8a8, w4a4} x {sgd, saq, sam-ptq}
    for label in labels:
        for seed in QUICK.seeds:
            result = json.loads((out / "measure" / label / f"seed-{seed}.json").read_text())
            assert len(result["faults"]) == len(QUICK.kinds) * len(QUICK.rates) * QUICK.draws
            assert all(0.0 <= f["accuracy"] <= 1.0 for f in result["faults"])
            assert 0.0 <= result["sparsity"] <= 1.0 and set(result["sparsity_layers"])
    sparse_saq = json.loads((out / "train" / "sparse-w4a4-saq" / "seed-0" / "config.json").read_text())
    assert sparse_saq["optimizer"] == "saq" and sparse_saq["activation_l1"] == QUICK.sparsity_l1
    assert sparse_saq["quantization"]["weight_bits"] == 4
    assert sparse_saq["optimizer_hparams"]["rho"] == QUICK.saq_rho
    # SAM is trained once per activation kind and seed, in full precision, and quantized afterwards
    fp = json.loads((out / "train" / "standard-fp-sam" / "seed-0" / "config.json").read_text())
    assert "quantization" not in fp and fp["optimizer"] == "sam"
    # two stages: every variant of a seed and activation kind starts from the same full-precision run
    for activations in ("standard", "sparse"):
        start = out / "train" / f"{activations}-fp" / "seed-1"
        assert "quantization" not in json.loads((start / "config.json").read_text())
        for name in ("w8a8-sgd", "w4a4-saq"):
            config = json.loads((out / "train" / f"{activations}-{name}" / "seed-1" / "config.json").read_text())
            assert config["init_from"]["run"] == str(start) and config["lr"] == QUICK.lr
    assert sparse_saq["init_from"]["run"] == str(out / "train" / "sparse-fp" / "seed-0")

    report = (out / "report.md").read_text()
    assert all(f"| {label} | {len(QUICK.seeds)} |" in report for label in labels)
    for claim in ("1. Sparse networks lose more", "2. Sparse networks are sharper", "3. SAQ recovers"):
        assert claim in report
    assert (out / "accuracy_vs_rate.png").stat().st_size > 1000

    again = fault_study(out, quick=True, progress=False)
    assert again["trained"] == [] and again["measured"] == []
    with pytest.raises(FaultStudyError, match="other settings"):
        fault_study(out, settings=replace(QUICK, draws=3), progress=False)


def test_activation_memory_faults_in_the_study(tmp_path, capsys):
    """--fault-locations weight,activation: every fault row says where it was; the report has both."""
    out = tmp_path / "both"
    args = ["study", "faults", "--quick", "--fault-locations", "weight,activation", "--out", str(out), "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    result = json.loads((out / "measure" / "sparse-w4a4-saq" / "seed-0.json").read_text())
    locations = [f["location"] for f in result["faults"]]
    per_location = len(QUICK.kinds) * len(QUICK.rates) * QUICK.draws
    assert locations == ["weight"] * per_location + ["activation"] * per_location
    report = (out / "report.md").read_text()
    assert "### activation bit-flip" in report and "### bit-flip" in report
    assert "| activation stuck-at | w4a4 |" in report
    assert main(["study", "faults", "--quick", "--fault-locations", "bias", "--out", str(tmp_path / "x")]) == 2
    assert "fault locations must be some of weight, activation" in capsys.readouterr().err


def test_the_paired_test_pairs_by_seed():
    """Differences 1, 2, 3 over three seeds: t = 2 / (1 / √3) = 2√3 on 2 degrees of freedom, whose
    two-sided p is 1 − t/√(t² + 2) = 1 − √(12/14) = 0.0742 (the t distribution with 2 dof in closed form)."""
    from analogsam.studies.faults import _paired_p

    a = [{"seed": 2, "v": 13.0}, {"seed": 0, "v": 11.0}, {"seed": 1, "v": 7.0}, {"seed": 5, "v": 99.0}]
    b = [{"seed": 0, "v": 10.0}, {"seed": 1, "v": 5.0}, {"seed": 2, "v": 10.0}]
    assert _paired_p(a, b, lambda x: x["v"]) == f"paired {1 - (12 / 14) ** 0.5:.3f}" == "paired 0.074"
    assert _paired_p(a[:1], b, lambda x: x["v"]) == "paired –"
