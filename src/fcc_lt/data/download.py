"""Fetching archives with checksum verification, and extraction that cannot escape its folder.

Downloads stream into ``<name>.part`` and are renamed only once complete and verified, so an
interrupted download never looks like a finished one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from fcc_lt.util.errors import DataError
from fcc_lt.util.files import open_input

CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    """The MD5 of a file read in chunks (a FIFO or a device is a DataError, as for every input file)."""
    digest = hashlib.md5()
    with open_input(path, "file to checksum", max_bytes=1 << 40) as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, md5: str, *, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` and check its MD5; raises DataError on any failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}",
                      disable=not progress, leave=False) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
    except (urllib.error.URLError, OSError, ValueError) as err:
        part.unlink(missing_ok=True)
        raise DataError(f"could not download {url}: {err}") from None
    if digest.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise DataError(f"downloaded {url} but its MD5 is {digest.hexdigest()}, expected {md5}; "
                        "the download is corrupt or the server sent something else")
    os.replace(part, dest)
    return dest


MAX_LINK_HOPS = 40  # as the kernel's limit on following symbolic links (ELOOP)


class _Tree:
    """The folder an archive is extracted into, as it will be once every member is written: what the
    archive's symbolic links point to, and what is already on disk. Paths are resolved through both,
    component by component as the kernel would, so that a link whose target only escapes through
    another link (``a -> sub/l2/..`` with ``sub/l2 -> ..``) is seen to escape; a purely lexical check
    of each target, or one against the not yet extracted disk, misses that."""

    def __init__(self, dest: Path, links: dict[tuple[str, ...], str]) -> None:
        self.dest = dest
        self.links = links

    def _link_at(self, parts: tuple[str, ...]) -> str | None:
        if parts in self.links:
            return self.links[parts]
        on_disk = self.dest.joinpath(*parts)
        if on_disk.is_symlink():  # already in the folder before this extraction
            return os.readlink(on_disk)
        return None

    def resolve(self, parts: tuple[str, ...], follow_last: bool = True) -> tuple[tuple[str, ...] | None, bool]:
        """(the real path inside dest, or None when it leaves dest; whether any link was followed)."""
        todo = list(parts)
        done: list[str] = []
        hops = 0
        followed = False
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not done:
                    return None, followed
                done.pop()
                continue
            candidate = (*done, part)
            target = self._link_at(candidate) if (todo or follow_last) else None
            if target is None:
                done.append(part)
                continue
            hops += 1
            followed = True
            if hops > MAX_LINK_HOPS or PurePosixPath(target).is_absolute():
                return None, followed
            todo = list(PurePosixPath(target).parts) + todo
        return tuple(done), followed


def _member_parts(name: str) -> tuple[str, ...]:
    return tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive into ``dest``, refusing members that would land outside it.

    Absolute paths, ``..`` components, links that point outside (resolved through the archive's other
    links and what is already in ``dest``, not just lexically), members under a link, a name given both
    to a link and to another member, and device files and FIFOs are all refused with a DataError naming
    the member, before anything is written. Python's tarfile ``data`` filter, where it exists, is applied
    as well, but nothing depends on it.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            _check_members(archive, dest, members)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # Python < 3.10.12 / 3.11.4; members were checked above
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{archive}: cannot extract: {err}") from None


def _check_members(archive: Path, dest: Path, members: list[tarfile.TarInfo]) -> None:
    """Every check of ``safe_extract``; raises a DataError naming the first member that fails."""
    links: dict[tuple[str, ...], str] = {}
    seen: dict[tuple[str, ...], tarfile.TarInfo] = {}
    for m in members:
        name = PurePosixPath(m.name)
        if name.is_absolute() or ".." in name.parts:
            raise DataError(f"{archive}: member {m.name!r} would be written outside {dest}; refusing")
        if not _member_parts(m.name):  # "./", as `tar -C dir -c .` writes it: dest itself
            if m.isdir():
                continue
            raise DataError(f"{archive}: member {m.name!r} names the target folder itself; refusing")
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise DataError(f"{archive}: member {m.name!r} is a device or special file; refusing")
        parts = _member_parts(m.name)
        earlier = seen.get(parts)
        if earlier is not None and (m.issym() or m.islnk() or earlier.issym() or earlier.islnk()):
            # the second would be written through (or replace) the first: what a link points to would
            # then depend on the order of extraction
            raise DataError(f"{archive}: member {m.name!r} appears twice, once as a link; refusing")
        seen[parts] = m
        if m.issym():
            links[parts] = m.linkname
    tree = _Tree(dest, links)
    link_names = set(links) | {p for p, m in seen.items() if m.islnk()}
    for m in members:
        parts = _member_parts(m.name)
        if not parts:
            continue
        through = next((parts[:i] for i in range(1, len(parts)) if parts[:i] in link_names), None)
        if through is None:
            real_parent, followed = tree.resolve(parts[:-1])
            if followed or real_parent != parts[:-1]:  # under a link that was already in dest
                through = parts[:-1]
        if through is not None:  # a chain of links can leave dest where each link alone does not
            raise DataError(f"{archive}: member {m.name!r} lies under the link {'/'.join(through)!r}; refusing")
        if m.issym() or m.islnk():
            if PurePosixPath(m.linkname).is_absolute():
                raise DataError(f"{archive}: link {m.name!r} -> {m.linkname!r} points outside {dest}; refusing")
            # a symbolic link's target is relative to its folder; a hard link's to the archive's root
            start = parts[:-1] if m.issym() else ()
            real, _ = tree.resolve((*start, *PurePosixPath(m.linkname).parts))
            if real is None:
                raise DataError(f"{archive}: link {m.name!r} -> {m.linkname!r} points outside {dest} (through "
                                f"the archive's other links, or round a loop of links); refusing")
            if m.islnk() and real not in seen:
                raise DataError(f"{archive}: hard link {m.name!r} -> {m.linkname!r} names no member of the "
                                "archive; refusing")


def extract_folder(archive: Path, root: Path, folder: str) -> Path:
    """Extract ``archive``, whose top level is ``folder``, into ``root`` as one step; returns root/folder.

    The members go to a staging folder beside the target (checked by ``safe_extract``) and ``folder`` is
    renamed into place only once complete, so a kill or a full disk during extraction never leaves a
    half-extracted folder that a later run would take for the dataset. Staging folders left by killed
    processes are removed.
    """
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".{folder}.extract-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    staging = root / f".{folder}.extract-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        safe_extract(archive, staging)
        if not (staging / folder).is_dir():
            raise DataError(f"{archive}: extracted, but it holds no {folder}/ folder")
        try:
            os.replace(staging / folder, root / folder)
        except OSError as err:
            if not (root / folder).is_dir():  # unless another process finished the same extraction first
                raise DataError(f"{archive}: cannot move the extracted {folder}/ into {root}: {err}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root / folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
