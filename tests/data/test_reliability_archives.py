"""Hostile tar archives cannot write, link or read outside the folder they are extracted into, with or
without Python's own tarfile data filter (which Python before 3.10.12 / 3.11.4 lacks).

Each archive is built here member by member. Around the target folder sit a "secret" file and an empty
"outside" folder that an escape would read, link or write; every test checks that nothing outside the
target changed and that the refusal names the member."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from fcc_lt.data.download import extract_folder, safe_extract
from fcc_lt.util.errors import DataError

SYM, HARD, DIR, FILE = tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.REGTYPE


def member(name: str, kind: bytes = FILE, linkname: str = "", data: bytes | None = None) -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == DIR else 0o644
    return info, data if data is not None else (b"payload" if kind == FILE else None)


def tar_with(path: Path, *members: tuple) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(buf.getvalue())
    return path


# The target is jail/a/dest: two levels of folders the archive must not reach, and a secret beside it.
ATTACKS = {
    # each link alone resolves inside lexically; followed through each other, l1 is jail/a
    "chain_then_hardlink": [member("sub", DIR), member("sub/l2", SYM, ".."), member("l1", SYM, "sub/l2/.."),
                            member("h", HARD, "l1/secret")],
    "chain_link_only": [member("sub", DIR), member("sub/l2", SYM, ".."), member("l1", SYM, "sub/l2/..")],
    "chain_defined_later": [member("l1", SYM, "sub/l2/.."), member("sub", DIR), member("sub/l2", SYM, "..")],
    "link_to_a_link_outside": [member("sub", DIR), member("sub/up", SYM, ".."), member("far", SYM, "sub/up/../.."),
                               member("near", SYM, "far")],
    "deep_chain": [member("d", DIR), member("d/e", DIR), member("d/e/x", SYM, "../.."),
                   member("y", SYM, "d/e/x/d/e/x/.."), member("z", SYM, "y/outside")],
    "hardlink_through_a_link": [member("sub", DIR), member("sub/l2", SYM, ".."),
                                member("via", SYM, "sub/l2/.."), member("h", HARD, "via/secret")],
    "hardlink_absolute": [member("h", HARD, "/etc/passwd")],
    "hardlink_dotdot": [member("h", HARD, "../secret")],
    "hardlink_to_no_member": [member("h", HARD, "not/in/the/archive")],
    "symlink_absolute": [member("l", SYM, "/etc")],
    "symlink_dotdot": [member("l", SYM, "../../a")],
    "symlink_loop": [member("p", SYM, "q"), member("q", SYM, "p"), member("h", HARD, "p")],
    "member_under_a_link": [member("l", SYM, "."), member("l/file")],
    "member_under_a_chain": [member("a", SYM, "."), member("a/b", SYM, ".."), member("a/b/escaped")],
    "link_then_file_of_the_same_name": [member("sub", DIR), member("x", SYM, "sub/target"), member("x")],
    "file_then_link_of_the_same_name": [member("x"), member("x", SYM, "sub")],
    "absolute_member": [member("/tmp/fcc-archive-test-escaped")],
    "dotdot_member": [member("ok/../../escaped")],
    "device": [member("null", tarfile.CHRTYPE)],
    "fifo": [member("pipe", tarfile.FIFOTYPE)],
}


def snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    """Every path under ``root`` except under ``skip``, with what it is and holds."""
    out = {}
    for p in root.rglob("*"):
        if p == skip or skip in p.parents:
            continue
        st = os.lstat(p)
        out[str(p)] = (st.st_mode, st.st_nlink, p.read_bytes() if p.is_file() and not p.is_symlink() else None)
    return out


@pytest.fixture
def jail(tmp_path: Path) -> Path:
    dest = tmp_path / "jail" / "a" / "dest"
    dest.mkdir(parents=True)
    (dest.parent / "secret").write_text("SECRET")
    (tmp_path / "jail" / "outside").mkdir()
    return dest


@pytest.mark.parametrize("with_data_filter", [True, False], ids=["py-data-filter", "own-checks-only"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_hostile_archive_is_refused_and_nothing_outside_changes(
        tmp_path: Path, jail: Path, monkeypatch: pytest.MonkeyPatch, attack: str, with_data_filter: bool) -> None:
    if not with_data_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = tar_with(tmp_path / "evil.tar", *ATTACKS[attack])
    before = snapshot(tmp_path, jail)
    with pytest.raises(DataError) as err:
        safe_extract(archive, jail)
    text = str(err.value)
    assert text.startswith(f"{archive}: ") and text.endswith("refusing"), text
    assert snapshot(tmp_path, jail) == before, "something outside the target changed"
    assert list(jail.iterdir()) == [], "members were written before the refusal"
    assert not Path("/tmp/fcc-archive-test-escaped").exists()


def test_refusals_name_the_member_and_the_reason(tmp_path: Path, jail: Path) -> None:
    cases = {
        "chain_then_hardlink": r"link 'l1' -> 'sub/l2/\.\.' points outside .*through the archive's other links",
        "chain_defined_later": r"link 'l1' -> 'sub/l2/\.\.' points outside",
        "hardlink_to_no_member": r"hard link 'h' -> 'not/in/the/archive' names no member of the archive",
        "link_then_file_of_the_same_name": r"member 'x' appears twice, once as a link",
        "symlink_loop": r"link '[pq]' -> '[pq]' points outside .*loop of links",
        "member_under_a_chain": r"member 'a/b' lies under the link 'a'",
        "fifo": r"member 'pipe' is a device or special file",
    }
    for attack, message in cases.items():
        archive = tar_with(tmp_path / f"{attack}.tar", *ATTACKS[attack])
        with pytest.raises(DataError, match=message):
            safe_extract(archive, jail)


def test_a_link_already_in_the_target_is_not_followed(tmp_path: Path, jail: Path) -> None:
    """A symlink that was in the folder before (left by someone else) counts like one of the archive."""
    (jail / "pre").symlink_to(tmp_path / "jail" / "outside")
    archives = [tar_with(tmp_path / "under.tar", member("pre/escaped")),
                tar_with(tmp_path / "through.tar", member("l", SYM, "pre/.."), member("h", HARD, "l/a/secret"))]
    before = snapshot(tmp_path, jail)
    for archive in archives:
        with pytest.raises(DataError, match="refusing"):
            safe_extract(archive, jail)
    assert snapshot(tmp_path, jail) == before
    assert not (tmp_path / "jail" / "outside" / "escaped").exists()


@pytest.mark.parametrize("with_data_filter", [True, False], ids=["py-data-filter", "own-checks-only"])
def test_harmless_archives_still_extract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         with_data_filter: bool) -> None:
    """Links that stay inside (also through other links), hard links to members, and the "./" entry that
    `tar -C dir -c .` writes: all extracted as before."""
    if not with_data_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = tar_with(tmp_path / "ok.tar",
                       member("./", DIR), member("./cifar-10-batches-py", DIR),
                       member("./cifar-10-batches-py/data_batch_1", data=b"batch one"),
                       member("./cifar-10-batches-py/sub", DIR),
                       member("./cifar-10-batches-py/sub/up", SYM, ".."),
                       member("./cifar-10-batches-py/alias", SYM, "sub/up/data_batch_1"),
                       member("./cifar-10-batches-py/hard", HARD, "cifar-10-batches-py/alias"),
                       member("./cifar-10-batches-py/hard2", HARD, "cifar-10-batches-py/data_batch_1"))
    folder = extract_folder(archive, tmp_path / "data", "cifar-10-batches-py")
    for name in ("data_batch_1", "alias", "hard", "hard2"):
        assert (folder / name).read_bytes() == b"batch one", name
    assert (folder / "alias").is_symlink() and (folder / "sub" / "up").resolve() == folder.resolve()
