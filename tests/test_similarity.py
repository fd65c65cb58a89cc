import math

import pytest
import torch
import torch.nn.functional as F

from bench.train.schedule import cyclic_step_lr
from bench.train.similarity import SimilarityHead, guarded_atanh, similarity_loss

S = torch.tensor([0.1, -0.5, 0.9, 0.0], dtype=torch.float64)
T = torch.tensor([0.2, 0.0, -0.3, 0.999], dtype=torch.float64)


def test_paper_convention_is_textbook_atanh_squared():
    expected = sum((math.atanh(s) - math.atanh(t)) ** 2 for s, t in zip(S.tolist(), T.tolist())) / len(S)
    assert similarity_loss(S, T, "paper", eps=1e-12).item() == pytest.approx(expected, rel=1e-6)


def test_code_convention_is_the_inherited_log_formula_and_four_times_paper():
    eps = 1e-5
    direct = (
        (torch.log(1 + S + eps) - torch.log(1 - S + eps) - torch.log(1 + T + eps) + torch.log(1 - T + eps)) ** 2
    ).mean()
    assert similarity_loss(S, T, "code", eps).item() == pytest.approx(direct.item(), rel=1e-12)
    assert similarity_loss(S, T, "code", eps).item() == pytest.approx(
        4 * similarity_loss(S, T, "paper", eps).item(), rel=1e-12
    )


def test_eps_guard_keeps_the_loss_finite_at_plus_minus_one():
    s = torch.tensor([1.0, -1.0])
    assert torch.isfinite(similarity_loss(s, torch.tensor([-1.0, 1.0]), "code", 1e-5))
    assert torch.isfinite(guarded_atanh(s, 1e-5)).all()


def test_head_mixes_ema_centred_cosines_with_softmax_weights():
    torch.manual_seed(0)
    head = SimilarityHead([3, 4], beta=0.9)
    fa = [torch.randn(5, 3, 2, 2), torch.randn(5, 4, 3, 1)]
    fb = [torch.randn(5, 3, 2, 2), torch.randn(5, 4, 3, 1)]
    with torch.no_grad():
        head.theta.copy_(torch.tensor([0.3, -0.2]))
    s = head(fa, fb)
    w = F.softmax(torch.tensor([0.3, -0.2]), 0)
    expected = 0
    for tap in range(2):
        mu = 0.1 * torch.cat([fa[tap], fb[tap]]).mean(dim=(0, 2, 3))  # EMA from 0, updated before use
        assert torch.allclose(head.means()[tap], mu)
        m = mu[:, None, None]
        cos = F.cosine_similarity((fa[tap] - m).flatten(1), (fb[tap] - m).flatten(1))
        expected = expected + w[tap] * cos
    assert torch.allclose(s, expected, atol=1e-6)


def test_head_theta_starts_at_zero_and_receives_gradient():
    head = SimilarityHead([2, 2])
    assert torch.equal(head.theta, torch.zeros(2))
    f = [torch.randn(4, 2, 3, 3, requires_grad=True) for _ in range(2)]
    g = [torch.randn(4, 2, 3, 3) for _ in range(2)]
    head(f, g).sum().backward()
    assert head.theta.grad is not None and head.theta.grad.abs().sum() > 0


def test_ema_is_frozen_in_eval_mode():
    head = SimilarityHead([2]).eval()
    head([torch.ones(2, 2, 1, 1)], [torch.ones(2, 2, 1, 1)])
    assert torch.equal(head.means()[0], torch.zeros(2))


def test_cyclic_schedule_values_of_method_md():
    lrs = [cyclic_step_lr(e) for e in range(40)]
    assert lrs[0:4] == [0.1] * 4
    assert lrs[4] == pytest.approx(0.03) and lrs[8] == pytest.approx(0.009)
    assert lrs[19] == pytest.approx(0.1 * 0.3**4)
    assert lrs[20] == 0.1  # reset at epoch 20
    assert lrs[20:40] == pytest.approx(lrs[0:20])
    assert cyclic_step_lr(3, 0.1, 0.3, step=2, cycle=20) == pytest.approx(0.03)
