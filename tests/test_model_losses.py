"""Model shapes, reparameterization gradients, and the closed-form KL against two references."""

import dataclasses

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vae_core.config import ModelConfig, TrainConfig
from vae_core.losses import elbo_loss, kl_per_dim, kl_weight, log_normal, reconstruction_nll
from vae_core.model import VAE

CONFIGS = [
    ModelConfig(arch="mlp", latent_dim=20, hidden=(400,)),
    ModelConfig(arch="mlp", latent_dim=2, hidden=(64, 32)),
    ModelConfig(arch="conv", latent_dim=16, channels=(8, 16)),
    ModelConfig(
        arch="conv", image_shape=(3, 32, 32), latent_dim=8, channels=(8, 16, 16), likelihood="gaussian"
    ),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.arch}-{c.image_shape}-{c.likelihood}")
def test_forward_returns_named_outputs_with_the_documented_shapes(config):
    model = VAE(config)
    x = torch.rand(5, *config.image_shape)
    out = model(x)
    assert out.x_hat.shape == x.shape and out.logits.shape == x.shape
    assert out.mu.shape == out.logvar.shape == out.z.shape == (5, config.latent_dim)
    assert 0 <= out.x_hat.min() and out.x_hat.max() <= 1
    assert torch.allclose(out.x_hat, torch.sigmoid(out.logits))


def test_gradients_reach_mu_and_logvar_through_the_sample():
    model = VAE(ModelConfig(arch="mlp", latent_dim=3, hidden=(16,)))
    x = torch.rand(4, 1, 28, 28)
    mu, logvar = model.encode(x)
    mu.retain_grad()
    logvar.retain_grad()
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    reconstruction_nll(x, model.decode_logits(z), likelihood="bernoulli").sum().backward()
    assert mu.grad is not None and mu.grad.abs().sum() > 0
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0


def test_closed_form_kl_equals_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(7, 5), torch.randn(7, 5)
    q = Normal(mu, torch.exp(0.5 * logvar))
    expected = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    assert torch.allclose(kl_per_dim(mu, logvar), expected, atol=1e-5)


def test_closed_form_kl_equals_a_monte_carlo_estimate():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([[0.7, -1.2, 0.1]]), torch.tensor([[-0.5, 0.3, -2.0]])
    z = mu + torch.exp(0.5 * logvar) * torch.randn(200_000, 3)
    mc = (log_normal(z, mu, logvar) - log_normal(z)).mean()
    assert mc.item() == pytest.approx(kl_per_dim(mu, logvar).sum().item(), rel=0.02)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    assert kl_per_dim(torch.zeros(2, 4), torch.zeros(2, 4)).abs().max() < 1e-7
    assert (kl_per_dim(torch.randn(2, 4), torch.randn(2, 4)) > 0).all()


def test_bernoulli_reconstruction_is_summed_over_pixels_in_nats():
    x = torch.full((2, 1, 4, 4), 1.0)
    logits = torch.zeros_like(x)  # p = 0.5 for every pixel
    nll = reconstruction_nll(x, logits, likelihood="bernoulli")
    assert torch.allclose(nll, torch.full((2,), 16 * torch.log(torch.tensor(2.0)).item()))


def test_gaussian_reconstruction_matches_torch_normal_log_prob():
    x = torch.rand(3, 3, 4, 4)
    logits = torch.randn_like(x)
    log_scale = torch.tensor(-1.3)
    expected = -Normal(torch.sigmoid(logits), log_scale.exp()).log_prob(x).flatten(1).sum(1)
    got = reconstruction_nll(x, logits, likelihood="gaussian", log_scale=log_scale)
    assert torch.allclose(got, expected, atol=1e-4)


def test_elbo_loss_is_recon_plus_beta_kl_batch_mean():
    torch.manual_seed(0)
    x, logits = torch.rand(6, 1, 5, 5), torch.randn(6, 1, 5, 5)
    mu, logvar = torch.randn(6, 3), torch.randn(6, 3)
    terms = elbo_loss(x, logits, mu, logvar, likelihood="bernoulli", beta=4.0)
    assert terms.kl > 0
    assert torch.allclose(terms.total, terms.recon + 4.0 * terms.kl)
    assert torch.allclose(terms.kl, kl_per_dim(mu, logvar).sum(1).mean())


def test_kl_warmup_is_linear_then_flat():
    assert kl_weight(0, beta=2.0, warmup_epochs=4) == 0
    assert kl_weight(1, beta=2.0, warmup_epochs=4) == pytest.approx(0.5)
    assert kl_weight(10, beta=2.0, warmup_epochs=4) == 2.0
    assert kl_weight(0, beta=2.0, warmup_epochs=0) == 2.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"arch": "rnn"}, "arch"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"beta": -1}, "beta"),
        ({"image_shape": (2, 28, 28)}, "channels"),
        ({"arch": "conv", "image_shape": (1, 30, 30)}, "divisible"),
    ],
)
def test_model_config_rejects_bad_values_with_a_readable_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_configs_round_trip_through_plain_dicts_and_hash():
    config = dataclasses.replace(ModelConfig(), latent_dim=4, hidden=[32, 16])
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert hash(config) == hash(ModelConfig.from_dict(config.to_dict()))
    train = TrainConfig(epochs=3, seed=7)
    assert TrainConfig.from_dict(train.to_dict()) == train
    with pytest.raises(ValueError, match="no field"):
        ModelConfig.from_dict({"latent_dim": 2, "evil": 1})
