"""Read a checkpoint file's payload without ever running code from it.

Loading is defended twice. First the file's pickle stream is read opcode by opcode
(``pickletools.genops`` parses, it executes nothing) and any callable other than
PyTorch's tensor-rebuilding functions is refused. Then ``torch.load(weights_only=True)``
unpickles it with PyTorch's restricted unpickler. There is no fallback to
``weights_only=False``. Nothing is unpacked that would take more memory than the limits allow
(``vae_core.limits``: the file's size and every zip entry's declared size are checked first), and
every tensor returned is a dense block of its own storage, so none claims more memory than the
file holds. Every failure becomes a :class:`CheckpointError` with a message a user can act on.
What the payload means is ``checkpoints``' business.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import zipfile
from pathlib import Path, PurePath
from typing import Any, BinaryIO, NamedTuple

import torch

from vae_core import limits

# The pickle names every object; a vae-explorer checkpoint's is a few hundred KB at most.
MAX_PICKLE_BYTES = 64 * 1024**2
REFUSED = (
    "refused: this file contains Python objects that could run code; "
    "only vae-explorer checkpoints are accepted"
)

CORRUPT = "the file is truncated or corrupt"
# What torch.save (zip format, pickle protocol 2) writes for a dict of tensors; nothing else may be named.
_STORAGES = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")

_ALLOWED_GLOBALS = frozenset(
    {
        "torch._utils _rebuild_tensor_v2",
        "collections OrderedDict",
        *(f"torch {kind}Storage" for kind in _STORAGES),
    }
)

# Opcodes that look a callable up without GLOBAL's "module name" argument, or build objects by class.
_CODE_OPCODES = frozenset({"STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"})

_ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(ValueError):
    """A checkpoint cannot be saved, read or trusted; the message says why in plain words."""


class Meta(NamedTuple):
    path: Path | None
    label: str
    size_bytes: int
    mtime: float | None


def read_payload(source: Any, *, mmap: bool) -> tuple[Any, Meta]:
    """Return what ``torch.load(weights_only=True)`` makes of the file, after the checks it needs first."""
    data: bytes | None = None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = path.name or str(path)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise CheckpointError(f"no checkpoint file at {path}") from None
        except OSError as err:
            raise CheckpointError(f"{label}: cannot be read ({err.strerror or err})") from None
        if not path.is_file():
            raise CheckpointError(f"{path} is not a file")
        meta = Meta(path, label, stat.st_size, stat.st_mtime)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        meta = Meta(None, "uploaded file", len(data), None)
    elif hasattr(source, "read"):
        data = source.read(limits.MAX_CHECKPOINT_MB.bytes + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise CheckpointError("the upload must be opened in binary mode")
        data = bytes(data)
        name = getattr(source, "name", None)
        label = PurePath(name).name if isinstance(name, str) and name else "uploaded file"
        meta = Meta(None, label, len(data), None)
    else:
        raise TypeError(f"source must be a path, bytes or a binary file, got {type(source).__name__}")

    label = meta.label
    if meta.size_bytes == 0:
        raise CheckpointError(f"{label}: the file is empty")
    try:
        limits.MAX_CHECKPOINT_MB.check(meta.size_bytes, "the file", verb="is")
    except limits.LimitError as err:
        raise CheckpointError(f"{label}: {err}") from None
    try:
        with _open(meta.path, data) as handle:
            if handle.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
                handle.seek(0)
                _reject_non_zip(handle.read(), label)
            handle.seek(0)
            _check_archive(handle, label)
            if mmap and meta.path is not None and meta.path.suffix != ".safetensors":
                # A path, so torch can map the storages instead of reading them.
                return _torch_load(os.fspath(meta.path), label, mmap=True), meta
            handle.seek(0)
            return _torch_load(handle, label, mmap=False), meta
    except OSError as err:
        raise CheckpointError(f"{label}: cannot be read ({err.strerror or err})") from None


def _open(path: Path | None, data: bytes | None) -> BinaryIO:
    return open(path, "rb") if path is not None else io.BytesIO(data or b"")


def _reject_non_zip(data: bytes, label: str) -> None:
    """Refuse a plain pickle that names callables; call anything else not a checkpoint."""
    if _pickle_names_code(data) is True:
        raise CheckpointError(f"{label}: {REFUSED}")
    raise CheckpointError(
        f"{label}: not a vae-explorer checkpoint (not a PyTorch zip file; "
        "this app reads only files written by vae-explorer's save_checkpoint)"
    )


def _check_archive(handle: BinaryIO, label: str) -> None:
    """Check the zip's layout and entry sizes; refuse its pickle if it names anything but tensor rebuilders."""
    pickled = b""
    try:
        with zipfile.ZipFile(handle) as archive:
            entries = archive.infolist()
            names = [e.filename for e in entries]
            _check_unpacked_sizes(entries, label)
            pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
            entry = archive.getinfo(pickles[0]) if len(pickles) == 1 else None
            if entry is not None and entry.file_size <= MAX_PICKLE_BYTES:
                pickled = archive.read(entry)
    except CheckpointError:
        raise
    except Exception:  # BadZipFile, EOFError, zlib.error, a bad CRC, an impossible offset...
        raise CheckpointError(f"{label}: {CORRUPT}") from None
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise CheckpointError(
            f"{label}: a TorchScript archive (torch.jit.save), not a vae-explorer checkpoint"
        )
    if entry is None:
        raise CheckpointError(f"{label}: not a vae-explorer checkpoint (a zip archive of other files)")
    if len(names) != len(set(names)):
        raise CheckpointError(f"{label}: {CORRUPT} (an entry appears twice)")
    if entry.file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(f"{label}: not a vae-explorer checkpoint (its metadata is too large)")
    verdict = _pickle_names_code(pickled)
    if verdict is None:
        raise CheckpointError(f"{label}: {CORRUPT}")
    if verdict:
        raise CheckpointError(f"{label}: {REFUSED}")


def _check_unpacked_sizes(entries: list[zipfile.ZipInfo], label: str) -> None:
    """Refuse entries that unpack past the limit, one by one and in all, before anything is unpacked.

    The sizes are the ones the zip's central directory declares; ``torch.load`` sizes its buffers by
    them too and unpacks no more than they say (an entry that declares less than its data holds is
    cut short), so a deflate bomb cannot get past them.
    """
    try:
        for entry in entries:
            limits.MAX_UNPACKED_MB.check(entry.file_size, f"its entry {entry.filename!r}", verb="unpacks to")
        total = sum(entry.file_size for entry in entries)
        limits.MAX_UNPACKED_MB.check(total, "its entries", verb="unpack in all to")
    except limits.LimitError as err:
        raise CheckpointError(f"{label}: {err}") from None


def _pickle_names_code(data: bytes) -> bool | None:
    """Return whether one pickle stream names a callable outside the allowlist; None if it does not parse.

    ``pickletools.genops`` only decodes opcodes, so nothing in ``data`` runs here.
    """
    names_code = False
    try:
        # Decode to the end first: a text file can start with bytes that read as opcodes.
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in _CODE_OPCODES or (opcode.name == "GLOBAL" and arg not in _ALLOWED_GLOBALS):
                names_code = True
    except Exception:  # any decoding error: not a (complete) pickle
        return None
    return names_code


def _torch_load(file: Any, label: str, *, mmap: bool) -> Any:
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        # The restricted unpickler refused a global: never retry with weights_only=False.
        text = str(err).lower()
        if "global" in text or "blocked" in text:
            raise CheckpointError(f"{label}: {REFUSED}") from None
        raise CheckpointError(f"{label}: {CORRUPT}") from None
    except Exception as err:  # torch reports a damaged zip as RuntimeError, odd bytes as anything
        raise CheckpointError(f"{label}: {CORRUPT} ({first_line(err)})") from None
    _check_layouts(payload, label)
    return payload


def _check_layouts(payload: Any, label: str) -> None:
    """Refuse any tensor that is not a plain, dense block of its own storage.

    A stride-0 view (``torch.zeros(1).expand(n, m)``), an overlapping or non-contiguous view, or a
    slice of a larger storage can claim far more elements than the file holds; whatever copies it
    (a model's ``load_state_dict``, a NumPy conversion) would then allocate them.
    """
    stack, where = [payload], [""]
    while stack:
        value, at = stack.pop(), where.pop()
        if isinstance(value, dict):
            stack += value.values()
            where += [f"{at}[{k!r}]" if at else str(k) for k in value]
        elif isinstance(value, (list, tuple)):
            stack += value
            where += [f"{at}[{i}]" for i in range(len(value))]
        elif isinstance(value, torch.Tensor):
            need = value.numel() * value.element_size()
            if value.storage_offset() != 0 or not value.is_contiguous():
                raise CheckpointError(
                    f"{label}: tensor {at} is a view (shape {tuple(value.shape)}, strides {value.stride()}), "
                    "not a plain block of numbers"
                )
            if value.untyped_storage().nbytes() != need:
                raise CheckpointError(
                    f"{label}: tensor {at} claims {value.numel():,} elements of {value.dtype} ({need:,} bytes), "
                    f"but its storage holds {value.untyped_storage().nbytes():,} bytes"
                )


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= 200 else line[:197] + "..."
