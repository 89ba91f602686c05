"""Self-describing VAE checkpoints: the format, and loading it field by field.

A checkpoint is one ``torch.save`` zip file holding a dict of plain values and tensors
only: format version, model and train configs, dataset name and preprocessing, class
names, loss history, test metrics, a small uint8 sample of evaluation images (so the
analysis pages work with no dataset on disk), the atlas of that sample (codes, per-image
-ELBO, 2-D layout), the training timeline, free-form plain ``extra`` metadata, the
package version, the creation time and the state dict.

Reading goes through ``safeload`` (a pickle scan, then ``weights_only=True``); this module
checks every field before a model is built. ``saving`` writes the format (atomically),
``naming`` turns a user's text into a safe file name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, BinaryIO, NamedTuple

import torch

from vae_core import limits
from vae_core.atlas import Atlas, parse_atlas
from vae_core.config import ModelConfig, TrainConfig
from vae_core.model import VAE
from vae_core.safeload import CheckpointError, Meta, first_line, read_payload
from vae_core.timeline import Timeline, parse_timeline
from vae_core.train_state import TrainState, parse_train_state

FORMAT = "vae-explorer-checkpoint"
FORMAT_VERSION = 1
SUFFIX = ".pt"
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class CheckpointExists(CheckpointError):
    """The chosen checkpoint name is taken (or names a shipped model) and overwriting was not allowed."""


class Sample(NamedTuple):
    """A small bundle of evaluation data stored in a checkpoint.

    ``images`` is uint8 (N, C, H, W) in [0, 255]; ``labels`` is int64 (N,).
    """

    images: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class CheckpointInfo:
    """Describe a checkpoint without its weights.

    ``path`` is None for a checkpoint read from bytes or an upload. ``history`` holds one
    dict per epoch; ``metrics`` the test results (``test_total``, ``test_recon``,
    ``test_kl``, ``test_nll``, ``nll_k``, ``active_units``, ...); ``extra`` plain metadata
    such as split sizes, seed and ``shipped``. The dict fields are left out of the hash,
    so an info can still key a cache; treat them as read-only.
    """

    path: Path | None
    name: str
    model_config: ModelConfig
    train_config: TrainConfig | None
    dataset: str
    preprocessing: str
    class_names: tuple[str, ...]
    history: tuple[dict[str, Any], ...] = field(hash=False)
    metrics: dict[str, float] = field(hash=False)
    extra: dict[str, Any] = field(hash=False)
    created: str
    package_version: str
    format_version: int
    size_bytes: int
    mtime: float | None
    has_sample: bool
    has_atlas: bool = False
    has_timeline: bool = False

    @property
    def epochs(self) -> int:
        """Return the number of epochs trained (one history entry each)."""
        return len(self.history)

    @property
    def shipped(self) -> bool:
        """Return whether this checkpoint ships with the app (``extra["shipped"]``)."""
        return bool(self.extra.get("shipped", False))

    @property
    def summary(self) -> str:
        """Return one line such as ``mnist · conv · z=16 · 20 epochs · test ELBO 98.3``."""
        cfg = self.model_config
        parts = [self.dataset, cfg.arch]
        if cfg.likelihood != "bernoulli":
            parts.append(cfg.likelihood)
        parts.append(f"z={cfg.latent_dim}")
        parts.append(f"{self.epochs} epoch" + ("" if self.epochs == 1 else "s"))
        if is_number(self.metrics.get("test_total")):
            parts.append(f"test ELBO {self.metrics['test_total']:.1f}")
        if is_number(self.metrics.get("test_nll")):
            parts.append(f"NLL {self.metrics['test_nll']:.1f}")
        return " · ".join(parts)


class LoadedCheckpoint(NamedTuple):
    """A model ready for inference, its metadata, and what it carries (each None when absent).

    ``sample`` is the bundled evaluation images, ``atlas`` their stored map
    (``atlas.Atlas``), ``timeline`` the per-epoch record of training (``timeline.Timeline``),
    ``train_state`` the optimizer state and step count a resume continues from
    (``train_state.TrainState``; None in files saved without it or before it existed).
    ``model`` is in eval mode with ``requires_grad`` off on every parameter: it may be
    shared read-only between threads, so never train it in place.
    """

    model: VAE
    info: CheckpointInfo
    sample: Sample | None
    atlas: Atlas | None = None
    timeline: Timeline | None = None
    train_state: TrainState | None = None


class _Parsed(NamedTuple):
    info: CheckpointInfo
    state_dict: dict[str, torch.Tensor]
    sample: Sample | None
    atlas: Atlas | None
    timeline: Timeline | None
    train_state: TrainState | None


class BadCheckpoint(NamedTuple):
    """A ``.pt`` file in a folder that could not be read, and why."""

    path: Path
    reason: str


class CheckpointListing(NamedTuple):
    """The readable checkpoints of a folder and the unreadable ones, each sorted by file name."""

    good: list[CheckpointInfo]
    bad: list[BadCheckpoint]


def load_checkpoint(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO,
    *,
    map_location: str | torch.device = "cpu",
) -> LoadedCheckpoint:
    """Rebuild a VAE from a checkpoint alone, without unpickling arbitrary objects.

    Args:
        source: A file path, the file's bytes, or a binary file object (an upload).
        map_location: Device for the model. The sample always stays on the CPU.

    Returns:
        ``LoadedCheckpoint(model, info, sample, atlas, timeline, train_state)``; the model is in eval mode with
        ``requires_grad`` off.

    Raises:
        CheckpointError: The file is missing, too large, empty, truncated, not a
            vae-explorer checkpoint, from a newer format, carries code, or its weights do
            not fit its model config or are not finite.
    """
    payload, meta = read_payload(source, mmap=False)
    info, state_dict, sample, atlas, timeline, train_state = _parse(payload, meta)
    label = meta.label
    bad = first_non_finite(state_dict)
    if bad is not None:
        raise CheckpointError(f"{label}: contains NaN/inf weights (in {bad!r}); the training run diverged")
    model = VAE(info.model_config)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:  # _check_weights should have caught it; keep the message readable anyway
        raise CheckpointError(
            f"{label}: the weights do not fit the model config: {first_line(err)}"
        ) from None
    model.requires_grad_(False)
    model.eval()
    return LoadedCheckpoint(model.to(map_location), info, sample, atlas, timeline, train_state)


def read_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Read a checkpoint's metadata, checking its weights' names and shapes but not loading them.

    Args:
        path: A checkpoint file.

    Returns:
        Its :class:`CheckpointInfo`.

    Raises:
        CheckpointError: As :func:`load_checkpoint`, except that non-finite weights go unnoticed.
    """
    # mmap: tensors stay on disk, so listing a folder does not read every model's weights.
    payload, meta = read_payload(Path(path), mmap=True)
    info = _parse(payload, meta).info
    return info


def list_checkpoints(folder: str | os.PathLike[str]) -> CheckpointListing:
    """List every ``*.pt`` file in a folder (not its subfolders) with its metadata.

    Args:
        folder: The folder; a missing folder lists as empty.

    Returns:
        ``CheckpointListing(good, bad)``: infos of readable checkpoints and
        ``BadCheckpoint(path, reason)`` for the others, each sorted by file name.
    """
    folder = Path(folder)
    good: list[CheckpointInfo] = []
    bad: list[BadCheckpoint] = []
    if not folder.is_dir():
        return CheckpointListing(good, bad)
    files = sorted(p for p in folder.glob(f"*{SUFFIX}") if p.is_file() and not p.name.startswith("."))
    for path in files:
        try:
            good.append(read_info(path))
        except CheckpointError as err:
            bad.append(BadCheckpoint(path, str(err)))
        except Exception as err:  # one hostile or broken file must not hide the others
            reason = f"{path.name}: could not be read ({type(err).__name__}: {first_line(err)})"
            bad.append(BadCheckpoint(path, reason))
    return CheckpointListing(good, bad)


def _parse(payload: Any, meta: Meta) -> _Parsed:
    """Validate a loaded payload field by field; return its info, state dict and sample."""
    label = meta.label

    def fail(reason: str) -> CheckpointError:
        return CheckpointError(f"{label}: {reason}")

    if not isinstance(payload, dict):
        raise fail(
            f"not a vae-explorer checkpoint (it holds a {type(payload).__name__}, not a checkpoint dict)"
        )
    if "format" not in payload:
        if payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            raise fail(
                "not a vae-explorer checkpoint: it is a bare state_dict (weights only), probably from "
                "another project; a vae-explorer checkpoint also records its model config, dataset and history"
            )
        keys = ", ".join(sorted(map(str, payload))[:8]) or "none"
        raise fail(f"not a vae-explorer checkpoint (it has no 'format' field; its keys: {keys})")
    fmt = payload["format"]
    if not isinstance(fmt, str) or fmt != FORMAT:
        raise fail(
            f"not a vae-explorer checkpoint (format {fmt if isinstance(fmt, str) else type(fmt).__name__!r})"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise fail(f"unknown checkpoint format version {version!r}")
    if version > FORMAT_VERSION:
        made_by = payload.get("package_version")
        by = f", package {made_by}" if isinstance(made_by, str) else ""
        raise fail(
            f"made by a newer version of vae-explorer (format {version}{by}); "
            f"this app reads format {FORMAT_VERSION}; upgrade vae-explorer to open it"
        )
    try:
        unplain = _find_unplain(payload)
    except RecursionError:
        unplain = "nesting, too deep to read"
    if unplain is not None:
        raise fail(f"not a vae-explorer checkpoint (unexpected {unplain})")

    # The config is checked against the limits (vae_core.limits) before any model is built.
    try:
        model_config = ModelConfig.from_dict(payload.get("model_config"))
    except limits.LimitError as err:
        raise fail(f"its model is too large for this machine: {err}") from None
    except (ValueError, TypeError) as err:
        raise fail(f"invalid model config: {err}") from None
    raw_train = payload.get("train_config")
    try:
        train_config = None if raw_train is None else TrainConfig.from_dict(raw_train)
    except (ValueError, TypeError) as err:
        raise fail(f"invalid train config: {err}") from None

    dataset = payload.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise fail("the dataset name is missing")
    preprocessing = payload.get("preprocessing", "")
    class_names = payload.get("class_names", [])
    history = payload.get("history", [])
    metrics = payload.get("metrics") or {}
    extra = payload.get("extra") or {}
    created = payload.get("created", "")
    package_version = payload.get("package_version", "")
    if not isinstance(preprocessing, str):
        raise fail("preprocessing must be a string")
    if not isinstance(class_names, (list, tuple)) or not all(isinstance(n, str) for n in class_names):
        raise fail("class_names must be a list of strings")
    if not isinstance(history, (list, tuple)) or not all(isinstance(row, dict) for row in history):
        raise fail("history must be a list of dicts, one per epoch")
    if not isinstance(metrics, dict) or not all(is_number(v) for v in metrics.values()):
        raise fail("metrics must be a dict of numbers")
    if not isinstance(extra, dict):
        raise fail("extra must be a dict")
    if not isinstance(created, str) or not isinstance(package_version, str):
        raise fail("created and package_version must be strings")

    sample = _parse_sample(payload.get("sample"), model_config, fail)
    atlas = None
    if payload.get("atlas") is not None:
        if sample is None:
            raise fail("the atlas describes a bundled sample, but the checkpoint has none")
        atlas = parse_atlas(
            payload["atlas"], n=len(sample.images), latent_dim=model_config.latent_dim, fail=fail
        )
    timeline = parse_timeline(
        payload.get("timeline"),
        latent_dim=model_config.latent_dim,
        image_shape=model_config.image_shape,
        fail=fail,
    )
    state_dict = payload.get("state_dict")
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise fail("the state_dict is missing or holds something other than tensors")
    _check_weights(state_dict, model_config, fail)
    with torch.device("meta"):
        param_shapes = [tuple(p.shape) for p in VAE(model_config).parameters()]
    train_state = parse_train_state(payload.get("train_state"), param_shapes=param_shapes, fail=fail)

    info = CheckpointInfo(
        path=meta.path,
        name=meta.path.stem if meta.path is not None else PurePath(label).stem,
        model_config=model_config,
        train_config=train_config,
        dataset=dataset,
        preprocessing=preprocessing,
        class_names=tuple(class_names),
        history=tuple(history),
        metrics=dict(metrics),
        extra=dict(extra),
        created=created,
        package_version=package_version,
        format_version=version,
        size_bytes=meta.size_bytes,
        mtime=meta.mtime,
        has_sample=sample is not None,
        has_atlas=atlas is not None,
        has_timeline=timeline is not None,
    )
    return _Parsed(info, state_dict, sample, atlas, timeline, train_state)


def _find_unplain(value: Any, where: str = "payload") -> str | None:
    """Return where a value other than plain types and tensors hides in the payload, if anywhere."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"key {key!r} in {where}"
            found = _find_unplain(item, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _find_unplain(item, f"{where}[{i}]")
            if found:
                return found
        return None
    return f"{type(value).__name__} at {where}"


def _parse_sample(raw: Any, config: ModelConfig, fail: Any) -> Sample | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"images", "labels"}:
        raise fail("the bundled sample must hold exactly 'images' and 'labels'")
    images, labels = raw["images"], raw["labels"]
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise fail("the bundled sample images must be uint8 (N, C, H, W)")
    if tuple(images.shape[1:]) != config.image_shape:
        raise fail(
            f"the bundled sample images are {tuple(images.shape[1:])}, "
            f"but the model expects {config.image_shape}"
        )
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != (len(images),):
        raise fail(f"the bundled sample labels must be int64 of shape ({len(images)},)")
    return Sample(images, labels)


def _check_weights(state_dict: dict[str, torch.Tensor], config: ModelConfig, fail: Any) -> None:
    """Compare names and shapes with the model the config describes (built on the meta device, no memory)."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in VAE(config).state_dict().items()}
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing:
        raise fail(f"the weights do not fit the model config: missing {_few(missing)}")
    if unexpected:
        raise fail(f"the weights do not fit the model config: unexpected {_few(unexpected)}")
    wrong = [
        f"{key} has shape {tuple(state_dict[key].shape)} in the file, but the model config needs {shape}"
        for key, shape in expected.items()
        if tuple(state_dict[key].shape) != shape
    ]
    if wrong:
        more = f"; and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        raise fail(f"the weights do not fit the model config: {'; '.join(wrong[:3])}{more}")
    for key in expected:
        if state_dict[key].dtype not in WEIGHT_DTYPES:
            raise fail(f"weight {key} is {state_dict[key].dtype}, not a floating-point type")


def _few(keys: list[str], limit: int = 5) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def first_non_finite(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    for key, value in state_dict.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return key
    return None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
