"""Write a self-describing checkpoint: plain values and tensors only, through a temporary file and ``os.replace``.

A crash never leaves half a checkpoint or destroys the previous one. ``checkpoints`` reads what
this writes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any

import torch

import vae_core
from vae_core.atlas import Atlas, atlas_payload
from vae_core.checkpoints import FORMAT, FORMAT_VERSION, Sample, first_non_finite, is_number
from vae_core.config import TrainConfig
from vae_core.model import VAE
from vae_core.timeline import Timeline, timeline_payload


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: VAE,
    train_config: TrainConfig | None,
    dataset: str,
    history: Iterable[Mapping[str, Any]],
    preprocessing: str = "",
    class_names: Iterable[str] = (),
    metrics: Mapping[str, float] | None = None,
    sample: Sample | tuple[torch.Tensor, torch.Tensor] | None = None,
    extra: Mapping[str, Any] | None = None,
    atlas: Atlas | None = None,
    timeline: Timeline | None = None,
) -> Path:
    """Write a self-describing checkpoint atomically.

    The payload goes to a temporary file in the destination folder, is flushed and
    fsynced, then renamed over ``path`` with ``os.replace``. On any failure the temporary
    file is removed and a previous file at ``path`` is left as it was.

    Args:
        path: Destination file; parent folders are created.
        model: The VAE; its state dict is copied to the CPU.
        train_config: How it was trained, or None (e.g. an imported model).
        dataset: Dataset name, e.g. ``"mnist"``.
        history: One dict of numbers per epoch (``training.fit``'s history).
        preprocessing: How raw images became model inputs, in words.
        class_names: One name per label.
        metrics: Test results in nats, e.g. ``test_total``, ``test_nll``.
        sample: uint8 images (N, C, H, W) matching the model's image shape and integer
            labels (N,), stored so the app works without the dataset.
        extra: Plain values only (str, int, float, bool, None, lists, dicts), e.g.
            split sizes, seed, ``shipped``.
        atlas: The sample's atlas (``atlas.build_atlas`` on the sample's images); needs ``sample``.
        timeline: The training timeline (``timeline.TimelineRecorder.timeline()``).

    Returns:
        The path written.

    Raises:
        ValueError: An argument cannot be stored safely (wrong type, non-finite weights,
            a sample that does not match the model).
    """
    if not isinstance(model, VAE):
        raise ValueError(f"model must be a vae_core VAE, got {type(model).__name__}")
    if train_config is not None and not isinstance(train_config, TrainConfig):
        raise ValueError(f"train_config must be a TrainConfig or None, got {type(train_config).__name__}")
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset must be a non-empty name, got {dataset!r}")
    if not isinstance(preprocessing, str):
        raise ValueError(f"preprocessing must be a string, got {type(preprocessing).__name__}")
    names = tuple(class_names)
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"class_names must all be strings, got {names!r}")
    rows = [_plain(dict(row), where=f"history[{i}]") for i, row in enumerate(history)]
    state_dict = {key: value.detach().to("cpu") for key, value in model.state_dict().items()}
    bad = first_non_finite(state_dict)
    if bad is not None:
        raise ValueError(f"refusing to save: weight {bad!r} contains NaN or inf (did training diverge?)")
    if atlas is not None and (sample is None or len(atlas) != len(sample[0])):
        raise ValueError("an atlas must describe the bundled sample: pass the sample it was built on")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": vae_core.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_config": model.config.to_dict(),
        "train_config": None if train_config is None else train_config.to_dict(),
        "dataset": dataset,
        "preprocessing": preprocessing,
        "class_names": list(names),
        "history": rows,
        "metrics": _plain_metrics(metrics),
        "extra": _plain(dict(extra or {}), where="extra"),
        "sample": _sample_payload(sample, image_shape=model.config.image_shape),
        "atlas": atlas_payload(atlas),
        "timeline": timeline_payload(timeline),
        "state_dict": state_dict,
    }
    return _atomic_save(Path(path), payload)


def _atomic_save(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target, so os.replace is an atomic rename on one filesystem; the
    # leading dot and .tmp suffix keep it out of list_checkpoints.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; a checkpoint is an ordinary file
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    # Persist the rename itself (POSIX); best effort, some filesystems refuse it.
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _plain(value: Any, *, where: str) -> Any:
    """Return ``value`` as plain Python types a ``weights_only`` load accepts, or raise ValueError."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} keys must be strings, got {key!r}")
            out[key] = _plain(item, where=f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain(item, where=f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    # numpy scalars and one-element tensors (a loss after .detach()) become Python numbers.
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return _plain(value.item(), where=where)
    raise ValueError(
        f"{where} must hold only plain values (str, int, float, bool, None, lists, dicts), "
        f"got {type(value).__name__}"
    )


def _plain_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float | int]:
    out = _plain(dict(metrics or {}), where="metrics")
    for key, value in out.items():
        if not is_number(value):
            raise ValueError(f"metrics[{key!r}] must be a number, got {value!r}")
    return out


def _sample_payload(
    sample: Sample | tuple[torch.Tensor, torch.Tensor] | None, *, image_shape: tuple[int, int, int]
) -> dict[str, torch.Tensor] | None:
    if sample is None:
        return None
    if not isinstance(sample, tuple) or len(sample) != 2:
        raise ValueError("sample must be Sample(images, labels) or None")
    images, labels = sample
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise ValueError("sample images must be a uint8 tensor (N, C, H, W) in [0, 255]")
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"sample images must be (N, {', '.join(map(str, image_shape))}) to match the model, "
            f"got {tuple(images.shape)}"
        )
    if (
        not isinstance(labels, torch.Tensor)
        or labels.dtype.is_floating_point
        or labels.dtype.is_complex
        or labels.dtype == torch.bool
        or labels.shape != (images.shape[0],)
    ):
        raise ValueError(f"sample labels must be an integer tensor of shape ({images.shape[0]},)")
    # clone(): a slice of a larger tensor would otherwise save the whole underlying storage.
    return {
        "images": images.detach().to("cpu").contiguous().clone(),
        "labels": labels.detach().to("cpu", torch.int64).contiguous().clone(),
    }
