"""Write a self-describing checkpoint: plain values and tensors only, through a temporary file.

A crash never leaves half a checkpoint or destroys the previous one. A save that may not overwrite
publishes the file with ``os.link`` (fails if the name exists, at the moment of writing); one that may
uses ``os.replace``. ``checkpoints`` reads what this writes.
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
from vae_core.checkpoints import FORMAT, FORMAT_VERSION, CheckpointExists, Sample, first_non_finite, is_number
from vae_core.config import TrainConfig
from vae_core.model import VAE
from vae_core.safeload import CheckpointError
from vae_core.timeline import Timeline, timeline_payload
from vae_core.train_state import TrainState, train_state_payload


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
    train_state: TrainState | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a self-describing checkpoint atomically.

    The payload goes to a temporary file in the destination folder, is flushed and
    fsynced, then published under ``path``: renamed over it with ``os.replace`` when
    ``overwrite`` is True, else hard-linked with ``os.link``, which fails if the name exists
    at that moment (two savers racing for one name: exactly one wins). On any failure the
    temporary file is removed and a previous file at ``path`` is left as it was.

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
        train_state: The optimizer state and step count after the last epoch (``fit``'s
            ``result.state``), so a resume continues exactly; None leaves it out.
        overwrite: Replace a file already at ``path``; False refuses, checked when the file
            is published (not only before the work that precedes it).

    Returns:
        The path written.

    Raises:
        ValueError: An argument cannot be stored safely (wrong type, non-finite weights,
            a sample that does not match the model).
        CheckpointExists: ``overwrite`` is False and ``path`` exists ("name taken").
        OSError: The file could not be written (no space, no permission, ...).
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
        "train_state": train_state_payload(train_state),
        "state_dict": state_dict,
    }
    return _atomic_save(Path(path), payload, overwrite=overwrite)


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that a checkpoint can be written at ``path``; return it.

    Creates its folder (as ``save_checkpoint`` would) and writes and removes a probe file there,
    so a folder given as the file, a parent that cannot exist (``/proc/x.pt``), a read-only
    filesystem or a missing permission shows now instead of after hours of training.

    Raises:
        CheckpointError: ``path`` cannot be written, with the reason.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise CheckpointError(f"{target} is a folder; give a file name, e.g. {target / 'model.pt'}")
    if os.path.lexists(target) and not target.is_file():
        raise CheckpointError(f"{target} exists and is not a regular file; choose another path")
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(
            f"cannot create the folder {folder} for {target.name}: {_reason(exc)}"
        ) from None
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".probe")
    except OSError as exc:
        raise CheckpointError(f"cannot write a file in {folder}: {_reason(exc)}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return target


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _atomic_save(path: Path, payload: dict[str, Any], *, overwrite: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and os.path.lexists(path):
        raise _name_taken(path)  # early, before the payload is written
    # Same folder as the target, so the rename or link is atomic on one filesystem; the
    # leading dot and .tmp suffix keep it out of list_checkpoints.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; a checkpoint is an ordinary file
        if overwrite:
            os.replace(tmp_name, path)
        else:
            _publish_exclusive(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_folder(path.parent)
    return path


def _publish_exclusive(tmp_name: str, path: Path) -> None:
    """Give the finished temporary file the name ``path`` only if no file has it, atomically."""
    try:
        os.link(tmp_name, path)  # POSIX link(2) fails with EEXIST instead of replacing
    except FileExistsError:
        raise _name_taken(path) from None
    except OSError:
        # A filesystem without hard links: claim the name with an exclusive create, then fill it.
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise _name_taken(path) from None
        try:
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)  # the empty claim, never a finished file
            raise
        return
    with contextlib.suppress(OSError):
        os.unlink(tmp_name)  # the checkpoint now lives under its own name


def _name_taken(path: Path) -> CheckpointExists:
    return CheckpointExists(
        f"name taken: a checkpoint named {path.stem!r} already exists (perhaps saved a moment ago from "
        "another session); nothing was overwritten. Choose another name, or allow replacing it"
    )


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
