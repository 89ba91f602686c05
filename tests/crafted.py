"""Hostile checkpoints that ask for far more memory than their size: built small, for the limit tests.

``stride0_checkpoint``: a real checkpoint whose model config is huge and whose weights are
stride-0 expanded zeros (``torch.zeros(1).expand(shape)``), so the file stays a few KB while its
tensors claim gigabytes. ``deflate_bomb``: a real checkpoint with one storage entry replaced by a
few GiB of zeros, deflate-compressed to a few MB. Neither builder allocates what its file claims.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

from tests.helpers import random_splits, tiny_model
from vae_core.bundle import save_trained
from vae_core.config import ModelConfig, TrainConfig
from vae_core.model import VAE

CHUNK = 16 * 1024**2  # the bomb is this many zeros, deflated once and repeated


def real_checkpoint(path: Path) -> Path:
    """Write a small ordinary checkpoint (a tiny MLP with a bundled sample) and return its path."""
    save_trained(
        path,
        model=tiny_model(),
        data=random_splits(n_train=32, n_test=16),
        train_config=TrainConfig(dataset="random", epochs=1),
        history=[],
        sample_size=8,
    )
    return path


@contextlib.contextmanager
def _no_model_limits():
    """Lift the model limits while a config past them is described (never built)."""
    saved = {
        name: os.environ.get(name) for name in ("VAE_MAX_WIDTH", "VAE_MAX_LATENT_DIM", "VAE_MAX_PARAMETERS")
    }
    os.environ.update({name: str(10**12) for name in saved})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def stride0_checkpoint(path: Path, **config: Any) -> Path:
    """Write a checkpoint whose config takes ``config`` and whose weights are expanded zeros of its shapes.

    Args:
        path: Where to write it.
        config: ModelConfig fields over a 28x28 MLP, e.g. ``hidden=(10**6,)`` or ``latent_dim=10**7``.
    """
    with _no_model_limits():
        model_config = ModelConfig(**{"arch": "mlp", "latent_dim": 2, "hidden": (32,), **config})
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in VAE(model_config).state_dict().items()}
    payload = torch.load(real_checkpoint(path), weights_only=True)
    payload["model_config"] = model_config.to_dict()
    payload["state_dict"] = {k: torch.zeros(1).expand(shape) for k, shape in shapes.items()}
    payload["sample"] = payload["atlas"] = payload["timeline"] = None
    torch.save(payload, path)
    return path


def deflate_bomb(src: Path, dst: Path, *, gib: int = 3) -> Path:
    """Copy the checkpoint ``src`` to ``dst`` with its largest storage entry replaced by ``gib`` GiB of zeros.

    The zeros are deflated once per 16 MiB chunk: after a full flush every chunk compresses to the
    same bytes, so the stream is built by repetition in a fraction of a second and ``dst`` stays a few
    MB. The sizes, offsets and CRC are all genuine: the file is a valid zip that unpacks to ``gib`` GiB.
    """
    chunk = bytes(CHUNK)
    count = gib * 1024**3 // CHUNK
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate, as zip stores it
    first = deflater.compress(chunk) + deflater.flush(zlib.Z_FULL_FLUSH)
    repeat = deflater.compress(chunk) + deflater.flush(zlib.Z_FULL_FLUSH)
    stream = first + repeat * (count - 1) + deflater.flush()
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    with zipfile.ZipFile(src) as archive:
        infos = archive.infolist()
        victim = max((i for i in infos if "/data/" in i.filename), key=lambda i: i.file_size).filename
        entries = []
        for info in infos:
            if info.filename == victim:
                entries.append((info.filename, zipfile.ZIP_DEFLATED, crc, stream, count * CHUNK))
            else:
                data = archive.read(info)
                entries.append((info.filename, zipfile.ZIP_STORED, zlib.crc32(data), data, len(data)))
    _write_zip(dst, entries)
    return dst


def _write_zip(path: Path, entries: list[tuple[str, int, int, bytes, int]]) -> None:
    """Write (name, method, crc, stored bytes, unpacked size) entries as a plain zip (sizes < 4 GiB)."""
    central = b""
    with open(path, "wb") as out:
        for name, method, crc, stored, size in entries:
            offset, raw = out.tell(), name.encode()
            date = (2024 - 1980) << 9 | 1 << 5 | 1
            out.write(
                struct.pack(
                    "<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, date, crc, len(stored), size, len(raw), 0
                )
            )
            out.write(raw + stored)
            central += struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50, 20, 20, 0, method, 0, date, crc, len(stored), size, len(raw), 0, 0, 0, 0, 0, offset,
            )  # fmt: skip
            central += raw
        start = out.tell()
        out.write(central)
        out.write(
            struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), start, 0)
        )
