"""What a resume needs beyond the weights: the optimizer's state and the step count.

``TrainState`` is what ``training.fit`` returns after the last completed epoch and accepts back
as ``resume``. A checkpoint stores it optionally (``saving.save_checkpoint(train_state=...)``) as
plain values and tensors: the optimizer's per-parameter entries keyed by the parameter's index
written as a string (a safe load refuses non-string keys). Reading checks every entry against the
model the checkpoint describes, so a hostile or damaged entry is refused with a message instead of
breaking the first optimisation step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

# Adam's per-parameter entries (torch.optim.Adam); "step" is a scalar, the others have the parameter's shape.
MOMENT_KEYS = frozenset({"exp_avg", "exp_avg_sq", "max_exp_avg_sq"})
STATE_KEYS = MOMENT_KEYS | {"step"}
# Group entries that pick an implementation for the machine that saved them; a resume uses its own.
IMPLEMENTATION_KEYS = ("foreach", "fused", "capturable", "differentiable")


class TrainState(NamedTuple):
    """The optimizer's state and how many optimisation steps came before.

    ``optimizer`` is ``torch.optim.Optimizer.state_dict()`` (tensors, numbers, lists and dicts
    only); ``step`` counts every optimisation step of the model's training so far.
    """

    optimizer: dict
    step: int


def train_state_payload(state: TrainState | None) -> dict[str, Any] | None:
    """Return ``state`` as plain values and CPU tensors for a checkpoint, or None.

    Raises:
        ValueError: ``state`` is not a ``TrainState`` of an optimizer's ``state_dict()``.
    """
    if state is None:
        return None
    if not isinstance(state, TrainState):
        raise ValueError(f"train_state must be a TrainState or None, got {type(state).__name__}")
    step, optimizer = state.step, state.optimizer
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"train_state.step must be a whole number >= 0, got {step!r}")
    if not isinstance(optimizer, dict) or set(optimizer) != {"state", "param_groups"}:
        raise ValueError(
            "train_state.optimizer must be an optimizer's state_dict() (keys 'state', 'param_groups')"
        )
    per_param = {
        str(int(index)): {key: _cpu(value) for key, value in entry.items()}
        for index, entry in optimizer["state"].items()
    }
    groups = [{key: _cpu(value) for key, value in group.items()} for group in optimizer["param_groups"]]
    return {"step": step, "optimizer": {"state": per_param, "param_groups": groups}}


def _cpu(value: Any) -> Any:
    # clone(): a view of a larger storage would otherwise save (and a safe load refuse) all of it.
    return value.detach().to("cpu").contiguous().clone() if isinstance(value, torch.Tensor) else value


def parse_train_state(
    raw: Any, *, param_shapes: Sequence[tuple[int, ...]], fail: Callable[[str], Exception]
) -> TrainState | None:
    """Check a stored train state against the model's parameters; return it, or None when absent.

    Args:
        raw: the checkpoint's ``train_state`` entry.
        param_shapes: the shape of each of the model's parameters, in ``model.parameters()`` order.
        fail: turns a reason into the exception to raise (it names the file).

    Raises:
        whatever ``fail`` returns: the entry is not an Adam state for this model.
    """
    if raw is None:
        return None

    def bad(reason: str) -> Exception:
        return fail(f"its optimizer state (for resuming) is unusable: {reason}")

    if not isinstance(raw, dict) or set(raw) != {"step", "optimizer"}:
        raise bad("it must hold exactly 'step' and 'optimizer'")
    step = raw["step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise bad(f"the step count must be a whole number >= 0, got {step!r}")
    optimizer = raw["optimizer"]
    if not isinstance(optimizer, dict) or set(optimizer) != {"state", "param_groups"}:
        raise bad("it must hold exactly 'state' and 'param_groups'")
    groups = optimizer["param_groups"]
    if not isinstance(groups, (list, tuple)) or not groups or not all(isinstance(g, dict) for g in groups):
        raise bad("param_groups must be a non-empty list of dicts")
    indices: list[int] = []
    for i, group in enumerate(groups):
        params = group.get("params")
        if not isinstance(params, (list, tuple)) or not all(_whole(p) for p in params):
            raise bad(f"param_groups[{i}]['params'] must be a list of parameter numbers")
        indices.extend(params)
        for key, value in group.items():
            if key != "params" and not _plain_setting(value):
                raise bad(f"param_groups[{i}][{key!r}] must be a number, flag or short list of numbers")
        lr = group.get("lr")
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not (math.isfinite(lr) and lr > 0):
            raise bad(f"param_groups[{i}]['lr'] must be a positive number, got {lr!r}")
    if sorted(indices) != list(range(len(param_shapes))):
        raise bad(
            f"its groups name parameters {_few(sorted(indices))}, but the model has {len(param_shapes)}"
        )
    per_param = optimizer["state"]
    if not isinstance(per_param, dict):
        raise bad("'state' must be a dict keyed by parameter number")
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, entry in per_param.items():
        index = int(key) if isinstance(key, str) and key.isdigit() else -1
        if not 0 <= index < len(param_shapes):
            raise bad(f"it has an entry for parameter {key!r}, but the model has {len(param_shapes)}")
        if not isinstance(entry, dict) or not entry or not set(entry) <= STATE_KEYS:
            raise bad(f"the entry of parameter {index} must hold only {', '.join(sorted(STATE_KEYS))}")
        checked = {}
        for name, value in entry.items():
            shape = () if name == "step" else tuple(param_shapes[index])
            if name == "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = torch.tensor(float(value))
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise bad(f"{name} of parameter {index} must be a floating-point tensor")
            if tuple(value.shape) != shape:
                raise bad(
                    f"{name} of parameter {index} has shape {tuple(value.shape)}, the model needs {shape}"
                )
            if not bool(torch.isfinite(value).all()) or (name != "exp_avg" and bool((value < 0).any())):
                raise bad(f"{name} of parameter {index} holds NaN, inf or impossible negative values")
            checked[name] = value
        state[index] = checked
    return TrainState({"state": state, "param_groups": [dict(g) for g in groups]}, step)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _plain_setting(value: Any) -> bool:
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)) and len(value) <= 8:
        return all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
        )
    return False


def _few(indices: list[int], limit: int = 6) -> str:
    text = ", ".join(map(str, indices[:limit]))
    return text + (f" ... ({len(indices)} in all)" if len(indices) > limit else "") if indices else "none"


def load_into(optimizer: torch.optim.Optimizer, state: TrainState, *, lr: float | None = None) -> None:
    """Load ``state`` into ``optimizer``, keeping this machine's implementation flags (and ``lr`` if given).

    The saving machine's fused/foreach/capturable choices may not exist here (a GPU's fused Adam on a
    CPU without it), so the fresh optimizer's flags win, before loading, so that the step counts land
    where this implementation wants them; everything that shapes the update carries over.
    """
    groups = []
    for saved, fresh in zip(state.optimizer["param_groups"], optimizer.param_groups):
        group = {k: v for k, v in saved.items() if k not in IMPLEMENTATION_KEYS}
        group.update({k: fresh[k] for k in IMPLEMENTATION_KEYS if k in fresh})
        if lr is not None:
            group["lr"] = lr
        groups.append(group)
    optimizer.load_state_dict({"state": state.optimizer["state"], "param_groups": groups})
