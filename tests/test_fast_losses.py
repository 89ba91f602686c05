"""The fused Bernoulli reconstruction term equals torch's binary cross-entropy, values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from vae_core.losses import reconstruction_nll


def reference(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [0.1, 3.0, 40.0])  # logits from near 0 to far in the tails
def test_bernoulli_nll_matches_torch_in_value_and_gradient(dtype, scale):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 7, 5, generator=gen, dtype=dtype)
    x[0] = (x[0] > 0.5).to(dtype)  # binary targets too
    base = torch.randn(6, 1, 7, 5, generator=gen, dtype=dtype) * scale
    ours_logits, ref_logits = base.clone().requires_grad_(), base.clone().requires_grad_()
    ours_x, ref_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = reconstruction_nll(ours_x, ours_logits, likelihood="bernoulli")
    expected = reference(ref_x, ref_logits)
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(ours, expected, **tol)
    weights = torch.arange(1.0, 7.0, dtype=dtype)  # a different upstream gradient per image
    (ours * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(ours_logits.grad, ref_logits.grad, **tol)
    torch.testing.assert_close(ours_x.grad, ref_x.grad, **tol)


def test_bernoulli_nll_is_finite_at_extreme_logits():
    logits = torch.tensor([[-1e4, -100.0, 0.0, 100.0, 1e4]], requires_grad=True)
    x = torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0]])
    nll = reconstruction_nll(x, logits, likelihood="bernoulli")
    assert torch.isfinite(nll).all()
    assert nll.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-6)
    nll.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_bernoulli_nll_leaves_its_inputs_alone_and_works_without_gradients():
    logits, x = torch.randn(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    before = logits.clone(), x.clone()
    with torch.inference_mode():
        nll = reconstruction_nll(x, logits, likelihood="bernoulli")
    torch.testing.assert_close(nll, reference(x, logits))
    assert torch.equal(logits, before[0]) and torch.equal(x, before[1])
