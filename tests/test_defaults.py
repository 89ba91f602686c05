"""The Train page's defaults and the epoch count suggested for a dataset's size."""

import dataclasses
import math

import pytest

from vae_core.config import ModelConfig, TrainConfig
from vae_core.datasets import DATASETS, DIGITS_TEST_SIZE
from vae_core.defaults import MIN_EPOCHS, MIN_STEPS, PAGE_DEFAULTS, suggested_epochs


def test_page_defaults_are_frozen_and_build_valid_configs():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAGE_DEFAULTS.epochs = 1
    assert PAGE_DEFAULTS.dataset in DATASETS
    ModelConfig(
        arch=PAGE_DEFAULTS.arch,
        latent_dim=PAGE_DEFAULTS.latent_dim,
        hidden=PAGE_DEFAULTS.hidden,
        beta=PAGE_DEFAULTS.beta,
    )
    TrainConfig(
        dataset=PAGE_DEFAULTS.dataset,
        epochs=PAGE_DEFAULTS.epochs,
        batch_size=PAGE_DEFAULTS.batch_size,
        lr=PAGE_DEFAULTS.lr,
    )


def test_the_default_epochs_give_the_digits_the_minimum_steps():
    n_train = 1797 - DIGITS_TEST_SIZE
    steps = PAGE_DEFAULTS.epochs * math.ceil(n_train / PAGE_DEFAULTS.batch_size)
    assert steps >= MIN_STEPS
    assert PAGE_DEFAULTS.epochs == suggested_epochs(n_train, batch_size=PAGE_DEFAULTS.batch_size)


@pytest.mark.parametrize(
    ("n_train", "batch_size", "expected"),
    [
        (300, 128, math.ceil(MIN_STEPS / 3)),  # 3 steps an epoch: many epochs
        (60_000, 128, MIN_EPOCHS),  # 469 steps an epoch: the floor decides
        (1, 128, MIN_STEPS),  # one image: one step an epoch
        (256, 128, math.ceil(MIN_STEPS / 2)),  # no partial batch
        (257, 128, math.ceil(MIN_STEPS / 3)),  # the partial batch counts as a step
    ],
)
def test_suggested_epochs_reach_the_minimum_steps(n_train, batch_size, expected):
    epochs = suggested_epochs(n_train, batch_size=batch_size)
    assert epochs == expected
    steps_per_epoch = math.ceil(n_train / batch_size)
    assert epochs * steps_per_epoch >= MIN_STEPS
    # the fewest such epochs (unless the floor decided)
    assert epochs == MIN_EPOCHS or (epochs - 1) * steps_per_epoch < MIN_STEPS


def test_suggested_epochs_options():
    assert suggested_epochs(1000, batch_size=100, minimum_steps=25) == 3
    assert suggested_epochs(1000, batch_size=100, minimum_steps=0, at_least=7) == 7
    assert suggested_epochs(1000, batch_size=100, minimum_steps=95, at_least=1) == 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_train=0, batch_size=128), "no training images"),
        (dict(n_train=10, batch_size=0), "batch_size"),
        (dict(n_train=10, batch_size=8, minimum_steps=-1), "minimum_steps"),
        (dict(n_train=10, batch_size=8, at_least=0), "at_least"),
    ],
)
def test_suggested_epochs_refuses_bad_input(kwargs, message):
    n_train = kwargs.pop("n_train")
    with pytest.raises(ValueError, match=message):
        suggested_epochs(n_train, **kwargs)
