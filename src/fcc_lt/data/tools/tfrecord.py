"""TFRecord files and tf.train.Example records, read and written without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little-endian) | uint32 masked CRC32C of those 8 bytes | data | uint32 masked CRC32C of data

with mask(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2^32). Both checksums are verified;
a mismatch names the file and the record index.

A tf.train.Example is a protocol-buffer message ``Example{features: Features{feature: map<string,
Feature>}}`` where a Feature holds one of bytes_list (1), float_list (2) or int64_list (3), each a
repeated field 1. Only the protobuf wire format needed for that is implemented here: varints,
length-delimited fields, fixed32/fixed64 (skipped when unknown), packed and unpacked repeated numbers.

CRC32C (Castagnoli) is table-driven; ``crc32c_many`` runs the table lookups for many equal-length
buffers at once with NumPy, which is what makes checking a CIFAR-sized file take a fraction of a second.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from fcc_lt.util.errors import DataError
from fcc_lt.util.files import read_input

_POLY = 0x82F63B78  # CRC32C, reflected
_MASK_DELTA = 0xA282EAD8


def _table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table[n] = c
    return table


TABLE = _table()
_TABLE_LIST = [int(v) for v in TABLE]


def crc32c(data: bytes) -> int:
    """CRC32C of ``data`` (pure Python: meant for short inputs; see ``crc32c_many``)."""
    crc = 0xFFFFFFFF
    table = _TABLE_LIST
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_many(buffers: Sequence[bytes]) -> np.ndarray:
    """CRC32C of every buffer (uint32 array): one vectorised pass per byte position, per length group."""
    out = np.zeros(len(buffers), dtype=np.uint32)
    by_length: dict[int, list[int]] = {}
    for i, buf in enumerate(buffers):
        by_length.setdefault(len(buf), []).append(i)
    for length, members in by_length.items():
        if len(members) == 1 and length <= 64:
            out[members[0]] = crc32c(buffers[members[0]])
            continue
        data = np.frombuffer(b"".join(buffers[i] for i in members), dtype=np.uint8).reshape(len(members), length)
        crc = np.full(len(members), 0xFFFFFFFF, dtype=np.uint32)
        for j in range(length):
            crc = TABLE[(crc ^ data[:, j]) & 0xFF] ^ (crc >> 8)
        out[members] = crc ^ np.uint32(0xFFFFFFFF)
    return out


def mask(crc: int | np.ndarray) -> int | np.ndarray:
    """The TFRecord masking of a CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8 mod 2^32."""
    if isinstance(crc, np.ndarray):
        c = crc.astype(np.uint64)
        return ((((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF).astype(np.uint32)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------- framing


def read_records(path: str | Path, verify: bool = True) -> list[bytes]:
    """All records of a TFRecord file, with both checksums of every record verified."""
    path = Path(path)
    blob = read_input(path, "TFRecord file")
    headers: list[bytes] = []
    header_crcs: list[int] = []
    records: list[bytes] = []
    data_crcs: list[int] = []
    pos = 0
    while pos < len(blob):
        i = len(records)
        if pos + 12 > len(blob):
            raise DataError(f"{path}: record {i}: truncated length header ({len(blob) - pos} bytes left at "
                            f"offset {pos}, 12 needed); the file is cut short")
        header = blob[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", blob[pos + 8:pos + 12])
        if verify and mask(crc32c(header)) != header_crc:
            raise DataError(f"{path}: record {i}: length CRC mismatch at offset {pos}; the file is corrupt "
                            "or not a TFRecord file")
        start = pos + 12
        end = start + length
        if end + 4 > len(blob):
            raise DataError(f"{path}: record {i}: declares {length} data bytes but the file ends "
                            f"{len(blob) - start} bytes after its header; the file is truncated")
        headers.append(header)
        header_crcs.append(header_crc)
        records.append(blob[start:end])
        (crc,) = struct.unpack("<I", blob[end:end + 4])
        data_crcs.append(crc)
        pos = end + 4
    if verify and records:
        computed = mask(crc32c_many(records))
        bad = np.flatnonzero(computed != np.asarray(data_crcs, dtype=np.uint32))
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{path}: record {i}: data CRC mismatch (stored 0x{data_crcs[i]:08x}, computed "
                            f"0x{int(computed[i]):08x}); the file is corrupt"
                            f"{f' ({len(bad)} bad records in all)' if len(bad) > 1 else ''}")
    return records


def frame_record(data: bytes) -> bytes:
    """One record in TFRecord framing."""
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", mask(crc32c(header))) + data
            + struct.pack("<I", int(mask(crc32c_many([data]))[0])))


def write_records(path: str | Path, records: Iterable[bytes]) -> None:
    """Write a TFRecord file (used by tests and to re-export data)."""
    with open(path, "wb") as f:
        for data in records:
            f.write(frame_record(data))


# ----------------------------------------------------------------------------- protobuf wire format


class _Malformed(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Malformed("varint runs past the end of the message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("varint longer than 10 bytes")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field; LEN values as bytes, numbers as ints."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 1:
            if pos + 8 > len(buf):
                raise _Malformed("fixed64 runs past the end of the message")
            yield number, wire, struct.unpack("<Q", buf[pos:pos + 8])[0]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise _Malformed(f"field {number} declares {length} bytes, {len(buf) - pos} left")
            yield number, wire, buf[pos:pos + length]
            pos += length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise _Malformed("fixed32 runs past the end of the message")
            yield number, wire, struct.unpack("<I", buf[pos:pos + 4])[0]
            pos += 4
        else:
            raise _Malformed(f"unsupported wire type {wire} (field {number})")


def _int64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _feature(buf: bytes) -> list[bytes] | list[float] | list[int]:
    kind = None
    values: list = []
    for number, wire, value in _fields(buf):
        if number not in (1, 2, 3):
            continue
        if kind is not None and kind != number:
            values = []  # a oneof: the last member set wins
        kind = number
        if wire != 2:
            raise _Malformed(f"Feature field {number} has wire type {wire}, expected a list message")
        assert isinstance(value, bytes)
        for inner_number, inner_wire, item in _fields(value):
            if inner_number != 1:
                continue
            if number == 1:  # BytesList
                if inner_wire != 2:
                    raise _Malformed("bytes_list value is not length-delimited")
                values.append(item)
            elif number == 2:  # FloatList: packed (LEN) or single fixed32
                if inner_wire == 2:
                    assert isinstance(item, bytes)
                    if len(item) % 4:
                        raise _Malformed("packed float_list length is not a multiple of 4")
                    values.extend(np.frombuffer(item, dtype="<f4").tolist())
                elif inner_wire == 5:
                    values.append(struct.unpack("<f", struct.pack("<I", item))[0])
                else:
                    raise _Malformed(f"float_list value has wire type {inner_wire}")
            else:  # Int64List: packed (LEN of varints) or single varint
                if inner_wire == 2:
                    assert isinstance(item, bytes)
                    p = 0
                    while p < len(item):
                        v, p = _varint(item, p)
                        values.append(_int64(v))
                elif inner_wire == 0:
                    values.append(_int64(int(item)))
                else:
                    raise _Malformed(f"int64_list value has wire type {inner_wire}")
    return values


def parse_example(buf: bytes) -> dict[str, list]:
    """A serialised tf.train.Example -> {feature name: list of bytes, floats or ints}."""
    features: dict[str, list] = {}
    for number, wire, value in _fields(buf):
        if number != 1 or wire != 2:
            continue
        assert isinstance(value, bytes)
        for f_number, f_wire, entry in _fields(value):
            if f_number != 1 or f_wire != 2:
                continue
            assert isinstance(entry, bytes)
            key, feature = "", b""
            for e_number, e_wire, item in _fields(entry):
                if e_number == 1 and e_wire == 2:
                    assert isinstance(item, bytes)
                    try:
                        key = item.decode("utf-8")
                    except UnicodeDecodeError:
                        raise _Malformed("feature name is not UTF-8") from None
                elif e_number == 2 and e_wire == 2:
                    assert isinstance(item, bytes)
                    feature = item
            features[key] = _feature(feature)
    return features


def read_examples(path: str | Path) -> list[dict[str, list]]:
    """Every tf.train.Example of a TFRecord file, parsed; errors name the file and record index."""
    out = []
    for i, record in enumerate(read_records(path)):
        try:
            out.append(parse_example(record))
        except _Malformed as err:
            raise DataError(f"{path}: record {i}: not a valid tf.train.Example ({err})") from None
    return out


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def encode_example(features: dict[str, list[bytes] | list[float] | list[int]], packed: bool = True) -> bytes:
    """Serialise {name: values} as a tf.train.Example; the list type picks bytes/float/int64_list.

    ``packed=False`` writes repeated numbers one field each (the older protobuf encoding), which
    readers must accept too.
    """
    entries = b""
    for name, values in features.items():
        if values and isinstance(values[0], bytes):
            inner = b"".join(_len_field(1, v) for v in values)  # type: ignore[arg-type]
            feature = _len_field(1, inner)
        elif values and isinstance(values[0], float):
            if packed:
                inner = _len_field(1, np.asarray(values, dtype="<f4").tobytes())
            else:
                inner = b"".join(_encode_varint(1 << 3 | 5) + struct.pack("<f", v) for v in values)
            feature = _len_field(2, inner)
        else:
            ints = [int(v) for v in values]
            if packed:
                inner = _len_field(1, b"".join(_encode_varint(v) for v in ints))
            else:
                inner = b"".join(_encode_varint(1 << 3 | 0) + _encode_varint(v) for v in ints)
            feature = _len_field(3, inner)
        entries += _len_field(1, _len_field(1, name.encode("utf-8")) + _len_field(2, feature))
    return _len_field(1, entries)
