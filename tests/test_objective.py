"""The objective in words: the ELBO only when β = 1 without warm-up."""

from __future__ import annotations

import pytest

from vae_core.objective import beta_text, is_elbo, objective_text


def test_beta_one_without_warmup_is_the_elbo() -> None:
    assert is_elbo(beta=1.0)
    assert "ELBO = E_q[log p(x|z)] − KL" in objective_text(beta=1.0)
    assert beta_text(beta=1.0) == "β = 1"


@pytest.mark.parametrize("beta", [0.5, 4.0])
def test_another_beta_is_written_as_optimised_and_never_called_the_elbo(beta: float) -> None:
    text = objective_text(beta=beta)
    assert not is_elbo(beta=beta)
    assert f"loss = reconstruction + β·KL with **β = {beta:g}**" in text
    assert "not the ELBO" in text and text.startswith("Training minimized loss")


def test_warmup_is_named() -> None:
    assert beta_text(beta=4.0, warmup_epochs=5) == "β = 4 · KL warm-up 5 epochs"
    assert beta_text(beta=1.0, warmup_epochs=1) == "β = 1 · KL warm-up 1 epoch"
    text = objective_text(beta=1.0, warmup_epochs=3)
    assert not is_elbo(beta=1.0, warmup_epochs=3)
    assert (
        "ramped up from 0 over the first 3 epochs" in text
        and "After the warm-up this is the negative ELBO" in text
    )
