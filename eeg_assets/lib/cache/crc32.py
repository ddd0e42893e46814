"""zlib's CRC-32 of overlapping windows, computed from each sample once.

A window cache stores every sample ``window / stride`` times (6 for 60 s windows every 10 s), and
a ZIP member needs the CRC-32 of all those bytes: checksumming them as written cost about a tenth
of a build. CRC-32 is linear over GF(2), so the CRC of a concatenation follows from the CRCs of
its parts (zlib's ``crc32_combine``). Each block of ``gcd(window, stride)`` samples is checksummed
once, and the windows' CRCs are combined from the blocks' CRCs.
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache

import numpy as np

_POLYNOMIAL = 0xEDB88320  # CRC-32, bit-reflected: x^k is bit 31 - k


def _multiply(a: int, b: int) -> int:
    """``a * b`` modulo the CRC polynomial (zlib's ``multmodp``); ``a`` must not be 0."""
    bit, product = 1 << 31, 0
    while True:
        if a & bit:
            product ^= b
            if not a & (bit - 1):
                return product
        bit >>= 1
        b = (b >> 1) ^ _POLYNOMIAL if b & 1 else b >> 1


def _shift(n_bytes: int) -> int:
    """``x^(8 n)`` modulo the polynomial: multiplying a CRC by it appends ``n`` zero bytes."""
    result, power = 1 << 31, 1 << 23  # x^0, x^8
    while n_bytes:
        if n_bytes & 1:
            result = _multiply(power, result)
        power = _multiply(power, power)
        n_bytes >>= 1
    return result


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of ``a + b`` from ``crc1 = crc32(a)``, ``crc2 = crc32(b)`` and ``len2 = len(b)``."""
    return _multiply(_shift(len2), crc1) ^ crc2


@lru_cache(maxsize=64)
def _shift_tables(n_bytes: int) -> np.ndarray:
    """Lookup tables ``(4, 256)`` of the linear map ``crc -> crc * x^(8 n)``, one per CRC byte."""
    factor = _shift(n_bytes)
    images = np.array([_multiply(factor, 1 << bit) for bit in range(32)], dtype=np.uint32)
    values = np.arange(256)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for byte in range(4):
        for bit in range(8):
            tables[byte, (values >> bit) & 1 == 1] ^= images[8 * byte + bit]
    return tables


def _apply(tables: np.ndarray, crcs: np.ndarray) -> np.ndarray:
    return (tables[0, crcs & 0xFF] ^ tables[1, (crcs >> 8) & 0xFF]
            ^ tables[2, (crcs >> 16) & 0xFF] ^ tables[3, crcs >> 24])


def windows_crc32(source: np.ndarray, n_windows: int, window: int, stride: int) -> int:
    """CRC-32 of the bytes of ``np.stack([source[..., i * stride:i * stride + window] for i in
    range(n_windows)])`` (C order), without building that stack.

    ``source`` must be C-contiguous: the bytes of its rows are the bytes that are checksummed.
    """
    if not source.flags.c_contiguous:
        raise ValueError("windows_crc32 needs a C-contiguous array")
    if n_windows == 0:
        return 0
    rows = source.reshape(-1, source.shape[-1])
    block = math.gcd(window, stride)
    per_window, per_stride = window // block, stride // block
    n_blocks = (n_windows - 1) * per_stride + per_window
    blocks = rows[:, :n_blocks * block].reshape(len(rows), n_blocks, block)
    block_crcs = np.array([[zlib.crc32(b) for b in row] for row in blocks], dtype=np.uint32)

    # The CRC of each window's row: its blocks combined, the first shifted past the others.
    block_bytes = block * source.itemsize
    first_blocks = np.arange(n_windows) * per_stride
    row_crcs = np.zeros((len(rows), n_windows), dtype=np.uint32)
    for j in range(per_window):
        shifted = block_crcs[:, first_blocks + j]
        if j < per_window - 1:
            shifted = _apply(_shift_tables((per_window - 1 - j) * block_bytes), shifted)
        row_crcs ^= shifted

    # All rows in C order (window by window, row by row) folded into one CRC.
    t0, t1, t2, t3 = (table.tolist() for table in _shift_tables(window * source.itemsize))
    crc = 0
    for row_crc in row_crcs.T.ravel().tolist():
        shifted = t0[crc & 0xFF] ^ t1[(crc >> 8) & 0xFF] ^ t2[(crc >> 16) & 0xFF] ^ t3[crc >> 24]
        crc = shifted ^ row_crc
    return crc
