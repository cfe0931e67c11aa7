"""analyze_model on a small digits MLP, the cross-run rank correlation and the plots."""

import json
import math

import pytest
import torch
from torch import nn

from analogsam.robustness import correlation, plots, probes


@pytest.fixture(scope="module")
def digits_batches():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x[:256] / 16.0, dtype=torch.float32)
    y = torch.tensor(y[:256])
    return [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]


def trained_mlp(batches, epochs):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(epochs):
        for x, y in batches:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model


def test_analyze_model_end_to_end(digits_batches):
    model = trained_mlp(digits_batches, epochs=10)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    out = probes.analyze_model(
        model,
        digits_batches,
        num_batches=2,
        sharpness=probes.SharpnessSettings(ascent_steps=2, sharpness_draws=3, hessian_iters=5, trace_draws=3),
        robustness=probes.CurveSettings(
            relative_etas=(0.0, 0.3),
            additive_etas=(0.0, 0.1),
            noise_draws=2,
            stuck_at_rates=(0.0, 0.05),
            bit_flip_rates=(0.0, 0.01),
            fault_draws=2,
        ),
    )
    assert set(out["metrics"]) == set(probes.METRICS) and set(out["curves"]) == set(probes.CURVES)
    assert all(math.isfinite(v) for v in out["metrics"].values())
    assert out["clean"]["num_batches"] == 2 and out["clean"]["n_samples"] == 128
    assert out["clean"]["accuracy"] > 0.8
    assert set(out["drops"]) == {
        "weight_noise_relative_drop@0.3",
        "weight_noise_additive_drop@0.1",
        "stuck_at_drop@0.05",
        "bit_flip_drop@0.01",
    }
    json.dumps(out)  # plain types only
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_analyze_model_subsets_and_errors(digits_batches):
    model = trained_mlp(digits_batches, epochs=1)
    out = probes.analyze_model(
        model,
        digits_batches,
        num_batches=1,
        metrics=["hessian_trace"],
        curves=[],
        sharpness=probes.SharpnessSettings(trace_draws=2),
    )
    assert list(out["metrics"]) == ["hessian_trace"] and out["curves"] == {}
    with pytest.raises(ValueError, match="metrics"):
        probes.analyze_model(model, digits_batches, metrics=["flatness"])


RECORDS = [
    {"run": "sgd", "hessian_trace": 40.0, "worst_case_sharpness": 0.3, "accuracy_drop": 0.20},
    {"run": "sam", "hessian_trace": 10.0, "worst_case_sharpness": 0.1, "accuracy_drop": 0.05},
    {"run": "asam", "hessian_trace": 20.0, "worst_case_sharpness": 0.05, "accuracy_drop": 0.08},
    {"run": "samson", "hessian_trace": 5.0, "worst_case_sharpness": 0.2, "accuracy_drop": 0.01},
]


def test_robustness_correlation_flat_and_nested():
    rows = {r["metric"]: r for r in correlation.robustness_correlation(RECORDS)}
    assert set(rows) == {"worst_case_sharpness", "hessian_trace"}
    assert rows["hessian_trace"]["spearman_rho"] == pytest.approx(1.0)
    assert rows["hessian_trace"]["n"] == 4
    # by hand: ranks (4,2,1,3) against (4,2,3,1): 1 − 6·Σd²/(n(n²−1)) = 1 − 6·8/60
    assert rows["worst_case_sharpness"]["spearman_rho"] == pytest.approx(1 - 6 * 8 / 60)
    nested = [
        {
            "run": r["run"],
            "metrics": {"hessian_trace": r["hessian_trace"]},
            "drops": {"stuck_at_drop@0.05": -r["accuracy_drop"]},
        }
        for r in RECORDS
    ]
    (row,) = correlation.robustness_correlation(nested, drop="stuck_at_drop@0.05")
    assert row["spearman_rho"] == pytest.approx(-1.0)


def test_robustness_correlation_missing_and_too_few():
    records = RECORDS[:2] + [{"run": "x", "hessian_trace": float("nan"), "accuracy_drop": 0.1}]
    (row,) = correlation.robustness_correlation(records, metrics=["hessian_trace"])
    assert row["n"] == 2 and math.isnan(row["spearman_rho"]) and math.isnan(row["p_value"])


def test_plots_write_pngs(tmp_path, digits_batches):
    paths = plots.plot_sharpness_scatters(RECORDS, tmp_path / "scatter")
    assert len(paths) == 2
    from analogsam.robustness.perturbations import weight_noise_curve

    model = trained_mlp(digits_batches, epochs=1)
    curve = weight_noise_curve(model, digits_batches, etas=(0.0, 0.5), draws=2, num_batches=1)
    paths.append(plots.plot_robustness_curves({"sgd": curve, "sgd-dict": curve.to_dict()}, tmp_path / "c.png"))
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
