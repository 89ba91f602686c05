"""Find PNG files whose pixel data ends before the rows their header promises.

PIL decodes a PNG whose compressed stream ends early without an error and leaves the missing rows
black, as if ``ImageFile.LOAD_TRUNCATED_IMAGES`` were on: a 149-byte file whose header says
20000x2000 pixels and whose data holds 3 rows becomes a blank picture. ``png_scanline_bytes``
counts what the data really holds, decompressing in bounded chunks without keeping the pixels.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Samples per pixel of each PNG colour type (PNG spec, section 11.2.2, IHDR).
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7 interlacing: each pass's first column, first row, column step and row step (PNG spec, 8.2).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_CHUNK = 1 << 20


def _row_bytes(width: int, bits_per_pixel: int) -> int:
    return 1 + (width * bits_per_pixel + 7) // 8  # a filter-type byte, then the packed samples


def _promised_bytes(width: int, height: int, bits_per_pixel: int, interlaced: bool) -> int:
    if not interlaced:
        return height * _row_bytes(width, bits_per_pixel)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w > 0 and h > 0:
            total += h * _row_bytes(w, bits_per_pixel)
    return total


def png_scanline_bytes(data: bytes) -> tuple[int, int, int] | None:
    """Return (bytes held, bytes promised, bytes per row) of a PNG's decompressed image data.

    Returns None when ``data`` is not a PNG this can follow (PIL then judges it on its own). For an
    interlaced image "bytes per row" is that of a full row, so held // per-row is an estimate.
    """
    if not data.startswith(PNG_SIGNATURE):
        return None
    view, at, header, idat = memoryview(data), len(PNG_SIGNATURE), None, []
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        body = view[at + 8 : at + 8 + length]
        if kind == b"IHDR" and len(body) >= 13:
            header = struct.unpack_from(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        at += 12 + length
    if header is None or header[3] not in _CHANNELS:
        return None
    width, height, depth, colour, _, _, interlace = header
    bits = depth * _CHANNELS[colour]
    promised = _promised_bytes(width, height, bits, interlace == 1)
    held, stream = 0, zlib.decompressobj()
    try:
        for body in idat:
            pending = bytes(body)
            while pending and not stream.eof and held < promised:
                held += len(stream.decompress(pending, _CHUNK))
                pending = stream.unconsumed_tail
    except zlib.error:
        return None  # damaged data: PIL's decoder says so itself
    return min(held, promised), promised, _row_bytes(width, bits)
