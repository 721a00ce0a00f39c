"""Property-based tests of the TFRecord reader (the input of `fcc data from-tfrecords`): any file either
reads or is a DataError naming the file and record, never another exception. Payloads are framed with
valid checksums so that the protobuf parser behind the CRC layer is exercised too."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fcc_lt.data.tools.tfrecord import encode_example, frame_record, read_examples, read_records
from fcc_lt.util.errors import DataError

SETTINGS = settings(max_examples=int(os.environ.get("FCC_HYPOTHESIS_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

features = st.dictionaries(
    st.text(max_size=6),
    st.one_of(st.lists(st.binary(max_size=8), max_size=3),
              st.lists(st.floats(width=32, allow_nan=False), max_size=3),
              st.lists(st.integers(-2**63, 2**63 - 1), max_size=3)),
    max_size=3)


@SETTINGS
@given(blob=st.binary(max_size=300))
@example(blob=b"\xff" * 12)
@example(blob=(2**63).to_bytes(8, "little") + b"\x00" * 8)
def test_any_bytes_read_or_are_a_data_error(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "f.tfrecords"
    path.write_bytes(blob)
    try:
        read_examples(path)
    except DataError as err:
        assert str(err).startswith(f"{path}: ")


@SETTINGS
@given(payloads=st.lists(st.one_of(st.binary(max_size=60), features.map(encode_example)), min_size=1, max_size=4),
       flip=st.one_of(st.none(), st.integers(0, 10**6)))
def test_framed_payloads_parse_or_name_the_record(tmp_path: Path, payloads: list[bytes], flip: int | None) -> None:
    """Well-framed records with arbitrary payloads (protobuf or junk), optionally one flipped byte."""
    blob = bytearray(b"".join(frame_record(p) for p in payloads))
    if flip is not None:
        blob[flip % len(blob)] ^= 0x5A  # any damage must be caught by a checksum or the parser
    path = tmp_path / "f.tfrecords"
    path.write_bytes(bytes(blob))
    try:
        examples = read_examples(path)
    except DataError as err:
        assert str(err).startswith(f"{path}: record "), str(err)
        return
    assert flip is None, "a damaged byte went unnoticed"  # CRC32C catches every single-byte error
    assert len(read_records(path)) == len(examples) == len(payloads)
    assert all(isinstance(e, dict) for e in examples)


@SETTINGS
@given(examples=st.lists(features, min_size=1, max_size=3))
def test_encoded_examples_read_back(tmp_path: Path, examples: list[dict]) -> None:
    path = tmp_path / "f.tfrecords"
    path.write_bytes(b"".join(frame_record(encode_example(e)) for e in examples))
    assert read_examples(path) == [{k: list(v) for k, v in e.items()} for e in examples]
