"""Say in words what a model was trained to optimise: the ELBO, or a β-weighted loss with KL warm-up.

With β = 1 and no warm-up the training loss is the negative ELBO (Kingma & Welling 2014, eq. 3).
With β ≠ 1 it is reconstruction + β·KL (Higgins et al. 2017, eq. 4), which is not the ELBO: the
pages must not call it one. ``kl_weight`` in ``vae_core.losses`` applies the warm-up.
"""

from __future__ import annotations


def _number(value: float) -> str:
    return f"{value:g}"


def beta_text(*, beta: float, warmup_epochs: int = 0) -> str:
    """Return β and the KL warm-up as a short phrase, e.g. ``"β = 4 · KL warm-up 5 epochs"``.

    Args:
        beta: the weight on KL (>= 0).
        warmup_epochs: epochs over which the KL weight ramps from 0 to ``beta`` (0: none).
    """
    text = f"β = {_number(beta)}"
    if warmup_epochs > 0:
        text += f" · KL warm-up {warmup_epochs} epoch{'s' if warmup_epochs != 1 else ''}"
    return text


def is_elbo(*, beta: float, warmup_epochs: int = 0) -> bool:
    """Return whether the training loss was the plain negative ELBO (β = 1, no warm-up)."""
    return beta == 1.0 and warmup_epochs == 0


def objective_text(*, beta: float, warmup_epochs: int = 0) -> str:
    """Return one Markdown sentence naming the loss the model was trained on, as it was optimised.

    Args:
        beta: the weight on KL (>= 0).
        warmup_epochs: epochs over which the KL weight ramped from 0 to ``beta`` (0: none).

    Returns:
        For β = 1 without warm-up, the ELBO; otherwise "loss = reconstruction + β·KL with β = …",
        the warm-up, and that this is not the ELBO (β < 1 buys sharper reconstructions with a
        less regular latent space, β > 1 the opposite).
    """
    if is_elbo(beta=beta, warmup_epochs=warmup_epochs):
        return (
            "Training maximizes the evidence lower bound, ELBO = E_q[log p(x|z)] − KL, a lower bound on "
            "log p(x) (it minimizes loss = reconstruction + KL = −ELBO)"
        )
    text = f"Training minimized loss = reconstruction + β·KL with **β = {_number(beta)}**"
    if warmup_epochs > 0:
        text += (
            f", β ramped up from 0 over the first {warmup_epochs} epoch{'s' if warmup_epochs != 1 else ''}"
        )
    if beta != 1.0:
        leaning = "sharper reconstructions" if beta < 1 else "a more regular latent space"
        text += (
            f". With β ≠ 1 this is not the ELBO: the KL term is weighted to trade reconstruction for "
            f"{leaning}"
        )
    else:
        text += ". After the warm-up this is the negative ELBO"
    return text + (
        ". Every page reports the ELBO = E_q[log p(x|z)] − KL (β = 1), a lower bound on log p(x), "
        "so models trained with any β compare fairly"
    )
