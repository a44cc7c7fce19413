"""The protobuf wire format the data contract writes and reads by hand (the fast paths).

One owner for varints, length-delimited fields and the canonical layout of one frame inside a
``FeatureList`` (``feature { bytes_list { value: <size bytes> } }``): the synthetic generator
writes records with it, the validator slices frames out of records laid out this way, and the
Beam job writes video-level Examples with it. Each user tests its bytes against the protobuf
library's own serialization.
"""

from __future__ import annotations

import numpy as np


def encode_varint(n: int) -> bytes:
    """Base-128 varint; a negative int64 is encoded as its 64-bit two's complement (10 bytes), as protobuf does."""
    out = bytearray()
    n &= 0xFFFFFFFFFFFFFFFF
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``buf[pos]``."""
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def delimited(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, varint length, payload."""
    return tag + encode_varint(len(payload)) + payload


def frame_header(size: int) -> bytes:
    """The bytes before each frame's data in a FeatureList: feature { bytes_list { value: <size bytes> } }."""
    bytes_list = 1 + len(encode_varint(size)) + size
    feature = 1 + len(encode_varint(bytes_list)) + bytes_list
    return b"\x0a" + encode_varint(feature) + b"\x0a" + encode_varint(bytes_list) + b"\x0a" + encode_varint(size)


def frame_layout(size: int) -> tuple[int, np.ndarray]:
    """(stride, header as uint8) of one ``size``-byte frame in a canonically laid out FeatureList."""
    header = frame_header(size)
    return len(header) + size, np.frombuffer(header, np.uint8)
