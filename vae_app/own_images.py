"""The user's own images on the Train page: which server folders may be read, and an uploaded zip's folder.

A served app reads folders only below ``folders.allowed_roots`` for the address it listens on. A
zip is unpacked (``archives.extract_images``) into a temporary folder of this session alone, which
is removed when a new zip replaces it or the session ends (its state is dropped and the
``TemporaryDirectory`` cleans up after itself; at the latest when the server exits).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import streamlit as st

from vae_app.escape import code, md
from vae_core.archives import MAX_ZIP_BYTES, ArchiveError, extract_images
from vae_core.folders import allowed_roots

ZIP_KEY = "train_zip_folder"  # (upload file_id, TemporaryDirectory, "folder:PATH")


def folder_roots() -> tuple[Path, ...]:
    """Return the folders this server may read image folders from (none when it listens beyond localhost)."""
    return allowed_roots(address=st.get_option("server.address"))


def session_roots() -> tuple[Path, ...]:
    """Return ``folder_roots()`` plus the temporary folder of this session's unpacked zip, if any."""
    held = st.session_state.get(ZIP_KEY)
    return folder_roots() + ((Path(os.path.realpath(held[1].name)),) if held is not None else ())


def folder_help() -> str:
    """Say where folders may be, for the folder box's help."""
    roots = folder_roots()
    if not roots:
        return "This server reads no folders of its own: upload a zip of your images below."
    return "One subfolder per class, converted to 28x28 greyscale. Folders inside: " + ", ".join(
        code(r) for r in roots
    )


def zip_dataset(upload) -> str:
    """Unpack an uploaded zip into this session's own temporary folder (replacing the previous zip's); return its
    dataset name, ``folder:PATH``.

    Args:
        upload: Streamlit's ``UploadedFile`` (``name``, ``file_id``, ``size``, ``getvalue()``).

    Raises:
        ArchiveError: too large, unsafe, damaged, or without images (the message says which).
    """
    held = st.session_state.get(ZIP_KEY)
    if held is not None and held[0] == upload.file_id:
        return held[2]
    if upload.size > MAX_ZIP_BYTES:
        raise ArchiveError(
            f"the zip is {upload.size / 2**20:,.1f} MB; the limit is {MAX_ZIP_BYTES / 2**20:,.0f} MB. Send a smaller "
            "zip, or (as the server's operator) raise the limit with VAE_ZIP_MAX_MB."
        )
    folder = tempfile.TemporaryDirectory(prefix="vae-zip-")
    try:
        with st.spinner(f"Unpacking {md(upload.name)} …"):
            unpacked = extract_images(upload.getvalue(), Path(folder.name), name=Path(upload.name).stem)
    except BaseException:
        folder.cleanup()
        raise
    if held is not None:
        held[1].cleanup()
    name = f"folder:{unpacked.folder}"
    st.session_state[ZIP_KEY] = (upload.file_id, folder, name)
    return name
