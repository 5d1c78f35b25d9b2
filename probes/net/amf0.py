"""AMF0, the value encoding of RTMP commands (Adobe's "Action Message Format -- AMF 0"
specification): numbers, booleans, strings, null, objects, ECMA and strict arrays.
Pure functions, no I/O; used by :mod:`probes.net.rtmp_chunk` and the RTMP probe
(probes/rtmp.py).
"""

from __future__ import annotations

import struct
from typing import Any


def amf0_encode(*values: Any) -> bytes:
    """AMF0 (Adobe AMF0 spec §2) of numbers, booleans, strings, None (null), dicts (objects)."""
    out = bytearray()
    for v in values:
        _amf0_put(out, v)
    return bytes(out)


def _amf0_put(out: bytearray, v: Any) -> None:
    if v is None:
        out.append(0x05)
    elif isinstance(v, bool):
        out += bytes((0x01, 1 if v else 0))
    elif isinstance(v, (int, float)):
        out.append(0x00)
        out += struct.pack(">d", float(v))
    elif isinstance(v, str):
        raw = v.encode()
        if len(raw) > 0xFFFF:
            out.append(0x0C)
            out += struct.pack(">I", len(raw)) + raw
        else:
            out.append(0x02)
            out += struct.pack(">H", len(raw)) + raw
    elif isinstance(v, dict):
        out.append(0x03)
        for k, item in v.items():
            key = str(k).encode()
            out += struct.pack(">H", len(key)) + key
            _amf0_put(out, item)
        out += b"\x00\x00\x09"
    else:
        raise TypeError(f"cannot AMF0-encode {type(v).__name__}")


def amf0_decode(data: bytes) -> list[Any]:
    """All AMF0 values in ``data``; raises ``ValueError`` on malformed input."""
    values: list[Any] = []
    pos = 0
    while pos < len(data):
        v, pos = _amf0_get(data, pos)
        values.append(v)
    return values


def _need(data: bytes, pos: int, n: int) -> None:
    if pos + n > len(data):
        raise ValueError("truncated AMF0")


def _amf0_get(data: bytes, pos: int) -> tuple[Any, int]:
    _need(data, pos, 1)
    marker = data[pos]
    pos += 1
    if marker == 0x00:
        _need(data, pos, 8)
        return struct.unpack_from(">d", data, pos)[0], pos + 8
    if marker == 0x01:
        _need(data, pos, 1)
        return data[pos] != 0, pos + 1
    if marker == 0x02:
        _need(data, pos, 2)
        n = struct.unpack_from(">H", data, pos)[0]
        _need(data, pos + 2, n)
        return data[pos + 2:pos + 2 + n].decode(errors="replace"), pos + 2 + n
    if marker == 0x0C:
        _need(data, pos, 4)
        n = struct.unpack_from(">I", data, pos)[0]
        _need(data, pos + 4, n)
        return data[pos + 4:pos + 4 + n].decode(errors="replace"), pos + 4 + n
    if marker in (0x03, 0x08):
        if marker == 0x08:
            _need(data, pos, 4)
            pos += 4  # ECMA array: approximate count, then object-like pairs
        obj: dict[str, Any] = {}
        while True:
            _need(data, pos, 3)
            n = struct.unpack_from(">H", data, pos)[0]
            if n == 0 and data[pos + 2] == 0x09:
                return obj, pos + 3
            _need(data, pos + 2, n)
            key = data[pos + 2:pos + 2 + n].decode(errors="replace")
            obj[key], pos = _amf0_get(data, pos + 2 + n)
    if marker in (0x05, 0x06):
        return None, pos
    if marker == 0x0A:
        _need(data, pos, 4)
        count = struct.unpack_from(">I", data, pos)[0]
        pos += 4
        items = []
        for _ in range(count):
            item, pos = _amf0_get(data, pos)
            items.append(item)
        return items, pos
    if marker == 0x0B:
        _need(data, pos, 10)
        return struct.unpack_from(">d", data, pos)[0], pos + 10
    raise ValueError(f"unsupported AMF0 marker 0x{marker:02x}")
