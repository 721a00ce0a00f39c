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

from fcc.errors import DataError

CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
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


def _is_within(base: Path, target: Path) -> bool:
    try:
        target.resolve().relative_to(base.resolve())
    except ValueError:
        return False
    return True


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive into ``dest``, refusing members that would land outside it.

    Absolute paths, ``..`` components, links pointing outside and device files are all refused with a
    DataError naming the member, before anything is written.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            links = {PurePosixPath(m.name) for m in members if m.issym() or m.islnk()}
            for m in members:
                name = PurePosixPath(m.name)
                if name.is_absolute() or ".." in name.parts or not _is_within(dest, dest / m.name):
                    raise DataError(f"{archive}: member {m.name!r} would be written outside {dest}; refusing")
                through = next((p for p in name.parents if p in links), None)
                if through is not None:  # a chain of links can leave dest where each link alone does not
                    raise DataError(f"{archive}: member {m.name!r} lies under the link {str(through)!r}; refusing")
                if m.issym() or m.islnk():
                    link = (dest / m.name).parent / m.linkname if m.issym() else dest / m.linkname
                    if PurePosixPath(m.linkname).is_absolute() or not _is_within(dest, link):
                        raise DataError(f"{archive}: link {m.name!r} -> {m.linkname!r} points outside "
                                        f"{dest}; refusing")
                if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                    raise DataError(f"{archive}: member {m.name!r} is a device or special file; refusing")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.11.4; members were checked above
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{archive}: cannot extract: {err}") from None


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
