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


def test_only_regular_files_of_bounded_size_are_opened(tmp_path: Path) -> None:
    """open_input (behind read_input) refuses what would block, never end or exhaust memory, before reading."""
    import os

    from fcc_lt.util.files import open_input

    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(3 << 20)  # sparse: 3 MiB of size, no disk
    with pytest.raises(DataError) as err:
        read_input(big, "annotation file", max_bytes=2 << 20)
    assert str(err.value) == (f"{big}: cannot read annotation file: it is 3.0 MiB, more than the 2.0 MiB such a "
                              "file may be")
    with open_input(big, "annotation file", max_bytes=3 << 20) as f:  # at the cap: read
        assert len(f.read()) == 3 << 20
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        with pytest.raises(DataError, match=r"fifo: cannot read split list: it is a FIFO \(named pipe\), not a "):
            read_input(fifo, "split list")  # returns at once: opened without waiting for a writer
    if os.path.exists("/dev/zero"):
        with pytest.raises(DataError, match=r"^/dev/zero: cannot read split list: it is a character device"):
            read_input("/dev/zero", "split list")


def test_an_atomic_write_never_replaces_a_device_or_a_fifo(tmp_path: Path) -> None:
    """The rename that makes a write atomic would put a regular file in place of whatever is at the path:
    /dev/full given as --out, a FIFO or a folder is refused, naming it, and stays what it was."""
    import os
    import stat

    from fcc_lt.util.errors import OutputError
    from fcc_lt.util.files import atomic_write_text

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match=r"pipe: it is a FIFO \(named pipe\), not a regular file; nothing was"):
        atomic_write_text(fifo, "x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    if os.path.exists("/dev/full"):
        with pytest.raises(OutputError, match=r"/dev/full: it is a character device"):
            atomic_write_text(Path("/dev/full"), "x")
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    atomic_write_text(tmp_path / "plain.txt", "a")
    atomic_write_text(tmp_path / "plain.txt", "b")  # a regular file is replaced as before
    assert (tmp_path / "plain.txt").read_text() == "b"
