"""Sharpness metrics against closed forms on quadratic losses, and the model left untouched."""

import math

import pytest
import torch
from torch import nn

from analogsam.robustness import sharpness as S

EIGENVALUES = torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.25], dtype=torch.float64)


class Quadratic(nn.Module):
    """forward() returns L(w) = ½ wᵀAw whatever the input: Hessian A, gradient Aw (w flattened, so the
    weight may be a matrix, as a crossbar weight is)."""

    def __init__(self, A, w0):
        super().__init__()
        self.weight = nn.Parameter(w0.clone())
        self.register_buffer("A", A)

    def forward(self, x):
        w = self.weight.flatten()
        return 0.5 * w @ self.A @ w


def identity_loss(out, labels):
    return out


def random_spd(eigenvalues, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q @ torch.diag(eigenvalues) @ q.T


BATCHES = [(torch.zeros(4, 1), torch.zeros(4)), (torch.zeros(2, 1), torch.zeros(2))]


def quadratic(w0=None, A=None):
    A = random_spd(EIGENVALUES) if A is None else A
    w0 = torch.zeros(len(A), dtype=torch.float64) if w0 is None else w0
    return Quadratic(A, w0)


def test_top_eigenvalue_matches_closed_form():
    model = quadratic(w0=torch.linspace(-1, 1, 6, dtype=torch.float64))
    r = S.hessian_top_eigenvalue(model, BATCHES, max_iters=200, tol=1e-10, loss_fn=identity_loss)
    assert r.value == pytest.approx(5.0, rel=1e-6)
    assert r.diagnostics["converged"] and r.diagnostics["residual"] < 1e-3
    assert r.stderr is None and r.settings["num_batches"] == 2 and r.settings["n_parameters"] == 6


def test_trace_matches_closed_form_within_its_stderr():
    A = random_spd(EIGENVALUES)
    r = S.hessian_trace(quadratic(A=A), BATCHES, draws=400, loss_fn=identity_loss, seed=3)
    exact = float(EIGENVALUES.sum())
    assert abs(r.value - exact) < 4 * r.stderr
    assert r.value == pytest.approx(exact, rel=0.05)
    # Rademacher probes: per-draw variance 2·Σ_{i≠j} A_ij²
    off = A - torch.diag(torch.diag(A))
    assert r.diagnostics["std"] == pytest.approx(math.sqrt(2 * float((off**2).sum())), rel=0.2)


def test_trace_exact_for_diagonal_hessian():
    r = S.hessian_trace(quadratic(A=torch.diag(EIGENVALUES)), BATCHES, draws=5, loss_fn=identity_loss)
    assert r.value == pytest.approx(float(EIGENVALUES.sum()), rel=1e-12)
    assert r.stderr == pytest.approx(0.0, abs=1e-12)


def test_worst_case_sharpness_of_quadratic_at_minimum():
    rho = 0.3
    r = S.worst_case_sharpness(quadratic(), BATCHES, rho=rho, steps=100, loss_fn=identity_loss)
    assert r.value == pytest.approx(0.5 * rho**2 * 5.0, rel=1e-4)
    assert r.diagnostics["random_start"]  # the gradient is zero at the minimum
    assert r.diagnostics["perturbation_norm"] == pytest.approx(rho)


def test_first_ascent_step_is_sams_epsilon():
    A = random_spd(EIGENVALUES)
    w = torch.linspace(-1, 1, 6, dtype=torch.float64)
    rho = 0.05
    r = S.worst_case_sharpness(quadratic(w, A), BATCHES, rho=rho, steps=1, loss_fn=identity_loss)
    g = A @ w
    eps = rho * g / g.norm()
    expected = 0.5 * (w + eps) @ A @ (w + eps) - 0.5 * w @ A @ w
    assert r.value == pytest.approx(float(expected), rel=1e-10)


def test_first_adaptive_step_is_asams_epsilon():
    A = random_spd(EIGENVALUES)
    w = torch.linspace(-1, 1, 6, dtype=torch.float64)
    rho, eta = 0.5, 0.01
    # T = |w| + η scales crossbar weights (matrices), as in the ASAM optimizer: give the weight two dimensions.
    r = S.adaptive_sharpness(quadratic(w.view(2, 3), A), BATCHES, rho=rho, steps=1, eta=eta, loss_fn=identity_loss)
    g, t = A @ w, w.abs() + eta
    eps = rho * t**2 * g / (t * g).norm()
    expected = 0.5 * (w + eps) @ A @ (w + eps) - 0.5 * w @ A @ w
    assert r.value == pytest.approx(float(expected), rel=1e-10)


def test_adaptive_sharpness_is_rescaling_invariant_and_worst_case_is_not():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))
    batches = [(torch.randn(16, 5), torch.randint(0, 3, (16,)))]
    scaled = nn.Sequential(nn.Linear(5, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))
    with torch.no_grad():
        scaled[0].weight.copy_(net[0].weight * 4.0)
        scaled[2].weight.copy_(net[2].weight / 4.0)
    asam = [S.adaptive_sharpness(m, batches, rho=0.5, steps=3, eta=0.0).value for m in (net, scaled)]
    sam = [S.worst_case_sharpness(m, batches, rho=0.5, steps=3).value for m in (net, scaled)]
    assert asam[0] == pytest.approx(asam[1], rel=1e-4)
    assert sam[0] != pytest.approx(sam[1], rel=0.05)


def test_average_sharpness_matches_closed_form():
    A = random_spd(EIGENVALUES)
    w = torch.linspace(-1, 1, 6, dtype=torch.float64)
    sigma = 0.2
    r = S.average_sharpness(quadratic(w, A), BATCHES, sigma=sigma, draws=2000, loss_fn=identity_loss)
    # E[½(w+ε)ᵀA(w+ε)] − ½wᵀAw = ½ Σ A_ii σ² w_i² for ε = |w|·σ·N(0, 1)
    exact = 0.5 * float((torch.diag(A) * sigma**2 * w**2).sum())
    assert abs(r.value - exact) < 4 * r.stderr
    absolute = S.average_sharpness(
        quadratic(w, A), BATCHES, sigma=sigma, draws=2000, relative=False, loss_fn=identity_loss
    )
    assert abs(absolute.value - 0.5 * sigma**2 * float(EIGENVALUES.sum())) < 4 * absolute.stderr


def small_net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.5), nn.Linear(12, 3))


def test_every_metric_restores_the_model_exactly():
    model = small_net()
    model.train()
    model[1].eval()  # a mixed-mode model must come back mixed
    batches = [(torch.randn(8, 6), torch.randint(0, 3, (8,))) for _ in range(3)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    calls = [
        lambda: S.worst_case_sharpness(model, batches, steps=2),
        lambda: S.adaptive_sharpness(model, batches, steps=2),
        lambda: S.average_sharpness(model, batches, draws=3),
        lambda: S.hessian_top_eigenvalue(model, batches, max_iters=3),
        lambda: S.hessian_trace(model, batches, draws=3),
    ]
    for call in calls:
        result = call()
        assert math.isfinite(result.value)
        assert result.settings["num_batches"] == 3 and result.settings["n_samples"] == 24
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), k
        assert [m.training for m in model.modules()] == modes
        assert all(p.grad is None for p in model.parameters())


def test_eval_mode_and_num_batches():
    model = small_net()
    batches = [(torch.randn(8, 6), torch.randint(0, 3, (8,))) for _ in range(4)]
    # eval mode: dropout off, so two calls agree exactly, and only the first two batches count
    a = S.hessian_trace(model, batches, draws=3, num_batches=2)
    b = S.hessian_trace(model, batches[:2] + [(torch.randn(8, 6), torch.randint(0, 3, (8,)))], draws=3, num_batches=2)
    assert a.value == b.value and a.settings["num_batches"] == 2


def test_accepts_a_shuffling_dataloader():
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.randn(40, 6), torch.randint(0, 3, (40,))), batch_size=16, shuffle=True)
    r = S.worst_case_sharpness(small_net(), loader, steps=2)
    assert r.settings["num_batches"] == 3 and r.settings["n_samples"] == 40 and r.value >= 0


def test_seed_reproducible_and_weights_subset():
    model = small_net()
    batches = [(torch.randn(8, 6), torch.randint(0, 3, (8,)))]
    a = S.average_sharpness(model, batches, draws=4, seed=7)
    b = S.average_sharpness(model, batches, draws=4, seed=7)
    c = S.average_sharpness(model, batches, draws=4, seed=8)
    assert a.value == b.value != c.value
    w = S.hessian_trace(model, batches, draws=2, parameters="weights")
    assert w.settings["n_parameters"] == 6 * 12 + 12 * 3


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, b: S.worst_case_sharpness(m, b, rho=-0.1), "rho"),
        (lambda m, b: S.worst_case_sharpness(m, b, steps=0), "steps"),
        (lambda m, b: S.adaptive_sharpness(m, b, eta=-1), "eta"),
        (lambda m, b: S.average_sharpness(m, b, draws=0), "draws"),
        (lambda m, b: S.hessian_trace(m, b, num_batches=0), "num_batches"),
        (lambda m, b: S.hessian_trace(m, b, parameters="biases"), "parameters"),
        (lambda m, b: S.hessian_trace(m, [], draws=2), "empty"),
        (lambda m, b: S.hessian_trace(m, b[0], draws=2), "not one pair"),
    ],
)
def test_clear_errors(call, message):
    model = small_net()
    with pytest.raises(ValueError, match=message):
        call(model, [(torch.randn(4, 6), torch.randint(0, 3, (4,)))])


def test_unknown_probe_option_is_named():
    from analogsam.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="num_batch"):
        S.hessian_trace(quadratic(), BATCHES, draws=2, loss_fn=identity_loss, num_batch=1)


class _TinyTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 16)
        self.encoder = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(1))


def test_hessian_metrics_run_through_attention():
    """torch's fused attention kernels have no second derivative: the Hessian probes use the math one."""
    torch.manual_seed(0)
    model = _TinyTransformer()
    x, y = torch.randn(16, 5, 4), torch.randint(0, 3, (16,))
    top = S.hessian_top_eigenvalue(model, [(x, y)], 5, seed=0)
    trace = S.hessian_trace(model, [(x, y)], 4, seed=0)
    assert math.isfinite(top.value) and top.value > 0 and math.isfinite(trace.value)
