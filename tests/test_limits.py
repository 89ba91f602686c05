"""Limits: a model or training run past them is refused from its config alone, with a message naming the limit."""

from __future__ import annotations

import resource
import time

import pytest

from vae_core import limits
from vae_core.cli import SHIPPED
from vae_core.config import ModelConfig, TrainConfig
from vae_core.limits import LimitError, check_training, training_bytes
from vae_core.model import VAE

CONFIGS = [
    ModelConfig(),
    ModelConfig(arch="mlp", latent_dim=2, hidden=(512, 256)),
    ModelConfig(arch="mlp", latent_dim=1, hidden=(7,), image_shape=(1, 8, 8)),
    ModelConfig(
        arch="mlp", latent_dim=32, hidden=(64, 48, 40), likelihood="gaussian", image_shape=(3, 32, 32)
    ),
    ModelConfig(arch="conv", latent_dim=3, channels=(8,)),
    ModelConfig(
        arch="conv", latent_dim=64, channels=(16, 32, 64), image_shape=(3, 32, 32), likelihood="gaussian"
    ),
    ModelConfig(arch="conv", latent_dim=5, channels=(4, 4, 4, 4), image_shape=(1, 16, 48)),
]


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.arch}-{c.latent_dim}-{c.hidden}-{c.channels}")
def test_the_parameter_estimate_is_exact(config):
    assert config.num_parameters() == VAE(config).num_parameters()


@pytest.mark.parametrize(
    ("fields", "env"),
    [
        ({"arch": "mlp", "hidden": (20000, 20000)}, "VAE_MAX_WIDTH"),  # F1: killed the server after 32 s
        ({"arch": "mlp", "hidden": (100_000_000,)}, "VAE_MAX_WIDTH"),  # F1: the raw allocator error
        ({"arch": "conv", "channels": (100_000, 100_000)}, "VAE_MAX_CHANNELS"),  # F1, conv
        ({"arch": "mlp", "hidden": (10000, 10000)}, "VAE_MAX_PARAMETERS"),  # each width allowed, the sum not
        ({"latent_dim": 10**7}, "VAE_MAX_LATENT_DIM"),
        ({"arch": "mlp", "hidden": (8,) * 40}, "VAE_MAX_LAYERS"),
        ({"image_shape": (1, 4096, 4096), "arch": "conv", "channels": (4,) * 12}, "VAE_MAX_IMAGE_SIDE"),
    ],
)
def test_a_config_past_a_limit_is_refused_at_once_naming_the_limit(fields, env):
    before, started = _maxrss_mb(), time.perf_counter()
    with pytest.raises(LimitError, match=f"more than the limit of .*environment variable {env}"):
        ModelConfig(**fields)
    assert time.perf_counter() - started < 1.0
    assert _maxrss_mb() - before < 50, "the check must not allocate the model it refuses"


def test_the_message_states_the_amount_and_the_limit():
    with pytest.raises(LimitError) as err:
        ModelConfig(arch="mlp", hidden=(20000,))
    assert str(err.value) == (
        "hidden layer 1 of the MLP asks for 20,000 units, more than the limit of 16,384 units; "
        "on a machine with more memory, raise it with the environment variable VAE_MAX_WIDTH"
    )
    assert isinstance(err.value, ValueError)  # every caller that shows ValueErrors shows it


def test_environment_variables_raise_and_lower_the_limits(monkeypatch):
    wide = {"arch": "mlp", "hidden": (20000,)}
    with pytest.raises(LimitError):
        ModelConfig(**wide)
    monkeypatch.setenv("VAE_MAX_WIDTH", "30000")
    assert ModelConfig(**wide).num_parameters() > 16384 * 784  # now allowed
    monkeypatch.setenv("VAE_MAX_PARAMETERS", "1_000_000")  # underscores read as in Python
    with pytest.raises(LimitError, match="the model asks for .* parameters.*VAE_MAX_PARAMETERS"):
        ModelConfig(**wide)
    monkeypatch.delenv("VAE_MAX_PARAMETERS")
    monkeypatch.setenv("VAE_MAX_LATENT_DIM", "2")
    assert ModelConfig(latent_dim=2).latent_dim == 2
    with pytest.raises(LimitError, match="latent_dim asks for 3 latent dimensions, more than the limit of 2"):
        ModelConfig(latent_dim=3)
    monkeypatch.setenv("VAE_MAX_UNPACKED_MB", "0.5")
    assert limits.MAX_UNPACKED_MB.bytes == 512 * 1024


@pytest.mark.parametrize("raw", ["lots", "-5", "0", "1.5", "nan"])
def test_a_bad_environment_value_is_named(monkeypatch, raw):
    monkeypatch.setenv("VAE_MAX_LATENT_DIM", raw)
    with pytest.raises(LimitError, match="environment variable VAE_MAX_LATENT_DIM must be"):
        ModelConfig()


def test_every_limit_has_its_own_variable_and_a_positive_default():
    names = [limit.env for limit in limits.ALL]
    assert len(set(names)) == len(names) and all(n.startswith("VAE_MAX_") for n in names)
    assert all(limit.default > 0 for limit in limits.ALL)


def test_training_past_the_batch_or_memory_limit_is_refused_before_anything_is_built():
    small = ModelConfig(arch="mlp", latent_dim=2, hidden=(32,))
    with pytest.raises(LimitError, match="batch_size asks for 100,000 images per batch.*VAE_MAX_BATCH"):
        check_training(small, TrainConfig(batch_size=100_000))
    # Within every model limit, but its feature maps at this batch size need tens of GB.
    wide_conv = ModelConfig(arch="conv", channels=(512, 512))
    assert wide_conv.num_parameters() < limits.MAX_PARAMETERS.value
    with pytest.raises(LimitError, match="training this model .*VAE_MAX_TRAIN_MEMORY_MB.*smaller batch"):
        check_training(wide_conv, TrainConfig(batch_size=4096))
    check_training(wide_conv, TrainConfig(batch_size=16))


def test_a_checkpoints_train_config_may_record_a_batch_past_the_limit():
    # A train config only records how a model was trained: a big machine's batch keeps its file readable.
    assert TrainConfig(batch_size=8192).batch_size == 8192


def test_the_shipped_models_and_the_form_defaults_are_within_every_limit():
    for spec in SHIPPED:
        check_training(spec.model, spec.train)
    check_training(ModelConfig(arch="mlp", latent_dim=8, hidden=(400,)), TrainConfig(batch_size=128))
    check_training(ModelConfig(arch="conv", latent_dim=8), TrainConfig(batch_size=limits.MAX_BATCH.value))


def test_the_training_estimate_grows_with_the_batch_and_the_model():
    config = ModelConfig(arch="mlp", hidden=(400,))
    assert training_bytes(config, 256) > training_bytes(config, 128) > config.num_parameters() * 4
    assert training_bytes(ModelConfig(arch="mlp", hidden=(800,)), 128) > training_bytes(config, 128)
