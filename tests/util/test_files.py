"""errors.read_input(_text): every way a user-named input file can be unreadable is one of our errors,
naming the path and what the file was meant to be."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcc_lt.util.errors import ConfigError, DataError
from fcc_lt.util.files import read_input, read_input_text


def test_reads_bytes_and_text(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes("caf\u00e9\n".encode())
    assert read_input(path, "list") == b"caf\xc3\xa9\n"
    assert read_input_text(path, "list") == "caf\u00e9\n"


@pytest.mark.parametrize("case", ["missing", "directory", "nul", "not_utf8"])
def test_unreadable_inputs_name_path_and_kind(case: str, tmp_path: Path) -> None:
    path = {"missing": tmp_path / "nope.yaml", "directory": tmp_path, "nul": tmp_path / "a\0b",
            "not_utf8": tmp_path / "latin1.yaml"}[case]
    if case == "not_utf8":
        path.write_bytes(b"name: caf\xe9\n")
    expected = {"missing": "config file not found", "directory": "cannot read config file",
                "nul": "cannot read config file", "not_utf8": "cannot read config file: not UTF-8"}[case]
    with pytest.raises(ConfigError, match=expected) as info:
        read_input_text(path, "config file", ConfigError)
    assert str(info.value).startswith(f"{path}: ")


def test_default_error_is_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="split list not found"):
        read_input(tmp_path / "missing.txt", "split list")
