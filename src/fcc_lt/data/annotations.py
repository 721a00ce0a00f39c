"""The JSON annotation format of image datasets: read, validate, write.

A file is one JSON object::

    {"num_classes": 3,
     "class_names": ["cat", "dog", "owl"],            # optional, one name per class
     "annotations": [{"image_id": 0, "fpath": "images/cat/0001.jpg", "category_id": 0,
                      "im_height": 375, "im_width": 500}, ...]}

``image_id`` (an integer or a string, unique in the file), ``fpath`` and ``category_id`` (0-based, below
``num_classes``) are required; ``im_height``/``im_width`` are optional (the original code treats them
so; tools that cannot read the images leave them out). Other keys are ignored, and kept by the tools
that rewrite a file. Relative ``fpath``s resolve against an image root chosen by the caller (by default
the folder holding the JSON file); paths are only ever opened, never passed to a shell or expanded.

Every problem is reported as a DataError naming the file, the entry index and the field, so a typo in
entry 80,000 is found before training starts, not in epoch 7.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcc_lt.util.errors import DataError, file_problem
from fcc_lt.util.files import read_input, write_json

REQUIRED_KEYS = ("image_id", "fpath", "category_id")
SIZE_KEYS = ("im_height", "im_width")
MAX_CLASSES = 1_000_000
SHOWN = 10  # problems listed in one error message


@dataclass
class Annotations:
    """One annotation file in memory, column-wise so that 400k entries stay cheap.

    ``heights``/``widths`` are 0 where the file does not give a size.
    """

    image_ids: list[int | str]
    fpaths: list[str]
    labels: np.ndarray
    num_classes: int
    heights: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    widths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    class_names: list[str] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.fpaths)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if not len(self.heights) and n:
            self.heights = np.zeros(n, dtype=np.int64)
        if not len(self.widths) and n:
            self.widths = np.zeros(n, dtype=np.int64)
        self.heights = np.asarray(self.heights, dtype=np.int64)
        self.widths = np.asarray(self.widths, dtype=np.int64)
        if not (len(self.image_ids) == n == len(self.labels) == len(self.heights) == len(self.widths)):
            raise ValueError("Annotations: image_ids, fpaths, labels, heights and widths differ in length")

    def __len__(self) -> int:
        return len(self.fpaths)

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    @property
    def sizes_known(self) -> bool:
        return bool(len(self) and (self.heights > 0).all() and (self.widths > 0).all())

    def subset(self, index: Sequence[int] | np.ndarray) -> Annotations:
        """The entries at ``index``, in that order."""
        index = np.asarray(index, dtype=np.int64)
        return Annotations(
            image_ids=[self.image_ids[i] for i in index.tolist()],
            fpaths=[self.fpaths[i] for i in index.tolist()],
            labels=self.labels[index], num_classes=self.num_classes,
            heights=self.heights[index], widths=self.widths[index],
            class_names=self.class_names, source=self.source,
        )

    def to_json(self) -> dict[str, Any]:
        entries = []
        for i in range(len(self)):
            entry: dict[str, Any] = {"image_id": self.image_ids[i], "fpath": self.fpaths[i],
                                     "category_id": int(self.labels[i])}
            if self.heights[i] > 0 and self.widths[i] > 0:
                entry["im_height"] = int(self.heights[i])
                entry["im_width"] = int(self.widths[i])
            entries.append(entry)
        out: dict[str, Any] = {"num_classes": self.num_classes}
        if self.class_names is not None:
            out["class_names"] = list(self.class_names)
        out["annotations"] = entries
        return out


# ------------------------------------------------------------------------------------------- reading


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_json(path: str | Path) -> dict[str, Any]:
    """The raw JSON object of an annotation file; DataError if it cannot be read or is not an object."""
    path = Path(path)
    data = read_input(path, "annotation file")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object with 'annotations' and 'num_classes', "
                        f"got a JSON {type(raw).__name__}")
    return raw


def _fail(source: str, problems: list[str], total: int) -> DataError:
    shown = "\n  ".join(problems[:SHOWN])
    more = f"\n  ... and {total - SHOWN} more" if total > SHOWN else ""
    what = "a problem" if total == 1 else f"{total} problems"
    return DataError(f"{source}: {what} in the annotations:\n  {shown}{more}")


def parse_annotations(raw: Any, source: str) -> Annotations:
    """Validate a raw JSON object (as ``load_json`` returns it) into Annotations.

    Structural problems of the top level raise at once; per-entry problems are all collected and the
    first ten are shown, each as ``annotations[i].field: what is wrong``.
    """
    if not isinstance(raw, dict):
        raise DataError(f"{source}: expected a JSON object, got {type(raw).__name__}")
    for key in ("annotations", "num_classes"):
        if key not in raw:
            raise DataError(f"{source}: missing top-level key {key!r} (a JSON object with 'annotations' "
                            "and 'num_classes' is expected)")
    num_classes = raw["num_classes"]
    if not _is_int(num_classes) or not 1 <= num_classes <= MAX_CLASSES:
        raise DataError(f"{source}: num_classes: expected an integer in [1, {MAX_CLASSES}], "
                        f"got {_short(num_classes)}")
    entries = raw["annotations"]
    if not isinstance(entries, list):
        raise DataError(f"{source}: annotations: expected a list of objects, got {type(entries).__name__}")
    if not entries:
        raise DataError(f"{source}: annotations: the list is empty")
    class_names = raw.get("class_names")
    if class_names is not None and (
        not isinstance(class_names, list) or len(class_names) != num_classes
        or not all(isinstance(n, str) for n in class_names)
    ):
        raise DataError(f"{source}: class_names: expected a list of {num_classes} strings (one per class), "
                        f"got {_short(class_names)}")

    n = len(entries)
    image_ids: list[int | str] = [0] * n
    fpaths: list[str] = [""] * n
    labels = np.zeros(n, dtype=np.int64)
    heights = np.zeros(n, dtype=np.int64)
    widths = np.zeros(n, dtype=np.int64)
    first_seen: dict[int | str, int] = {}
    problems: list[str] = []
    total = 0

    def problem(text: str) -> None:
        nonlocal total
        total += 1
        if len(problems) < SHOWN:
            problems.append(text)

    for i, entry in enumerate(entries):
        at = f"annotations[{i}]"
        if not isinstance(entry, dict):
            problem(f"{at}: expected an object, got {type(entry).__name__}")
            continue
        missing = [k for k in REQUIRED_KEYS if k not in entry]
        if missing:
            problem(f"{at}: missing key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
        image_id = entry.get("image_id")
        if "image_id" in entry:
            if not (_is_int(image_id) or (isinstance(image_id, str) and image_id)):
                problem(f"{at}.image_id: expected an integer or a non-empty string, got {_short(image_id)}")
            elif image_id in first_seen:
                problem(f"{at}.image_id: {_short(image_id)} is also the image_id of "
                        f"annotations[{first_seen[image_id]}]")
            else:
                first_seen[image_id] = i
                image_ids[i] = image_id
        fpath = entry.get("fpath")
        if "fpath" in entry:
            if not isinstance(fpath, str) or not fpath or "\x00" in fpath:
                problem(f"{at}.fpath: expected a non-empty file path string, got {_short(fpath)}")
            else:
                fpaths[i] = fpath
        label = entry.get("category_id")
        if "category_id" in entry:
            if not _is_int(label) or not 0 <= label < num_classes:
                problem(f"{at}.category_id: expected an integer in [0, {num_classes - 1}] "
                        f"(num_classes is {num_classes}), got {_short(label)}")
            else:
                labels[i] = label
        for key, column in zip(SIZE_KEYS, (heights, widths)):
            if key in entry and entry[key] is not None:
                value = entry[key]
                if not _is_int(value) or not 1 <= value <= 1 << 20:
                    problem(f"{at}.{key}: expected a positive integer (pixels), got {_short(value)}")
                else:
                    column[i] = value
    if total:
        raise _fail(source, problems, total)
    return Annotations(image_ids, fpaths, labels, num_classes, heights, widths, class_names, source)


def read_annotations(path: str | Path) -> Annotations:
    """Read and validate an annotation file (see the module docstring for the format)."""
    return parse_annotations(load_json(path), str(path))


# ------------------------------------------------------------------------------------------- writing


def write_annotations(path: str | Path, annotations: Annotations) -> None:
    """Write ``annotations`` in the JSON format, atomically."""
    write_json(path, annotations.to_json(), compact=True)


# ------------------------------------------------------------------------------------ checking files


def check_classes_present(annotations: Annotations) -> None:
    """DataError naming every class (id and name) without a single image in a training split."""
    counts = annotations.class_counts
    empty = np.flatnonzero(counts == 0).tolist()
    if empty:
        names = annotations.class_names
        shown = ", ".join(f"{c} ({names[c]})" if names else str(c) for c in empty[:SHOWN])
        more = " ..." if len(empty) > SHOWN else ""
        raise DataError(f"{annotations.source}: {len(empty)} of {annotations.num_classes} classes have no "
                        f"training images: {shown}{more}; every class needs at least one (lower num_classes, "
                        "or add images)")


def resolve_paths(annotations: Annotations, root: str | Path) -> list[str]:
    """Absolute-or-root-relative file paths: ``root/fpath`` for relative ``fpath``s, others as they are."""
    root = os.fspath(root)
    return [p if os.path.isabs(p) else os.path.join(root, p) for p in annotations.fpaths]


def _parallel(fn: Callable[[str], Any], paths: Sequence[str], threads: int = 16) -> list[Any]:
    """``fn`` over many files with threads: stat and header reads wait on the disk, not the CPU."""
    if len(paths) < 64:
        return [fn(p) for p in paths]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(fn, paths, chunksize=256))


def _open_problem(path: str, level: str) -> str | None:
    """None when ``path`` passes the check ``level`` ('header' or 'decode'), else what is wrong."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if level == "decode":
                img.load()
    except FileNotFoundError:
        return "file not found"
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, ...) for bad files
        return f"not a readable image ({type(err).__name__}: {err})"
    return None


def find_missing(paths: Sequence[str]) -> list[int]:
    """Indices of ``paths`` that are not existing regular files (missing, folders, devices, FIFOs: a FIFO
    would block the reader forever, a device never end)."""
    exists = _parallel(_is_regular_file, paths)
    return [i for i, ok in enumerate(exists) if not ok]


def _is_regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def missing_files_error(source: str, paths: Sequence[str], missing: Sequence[int], root: str | Path) -> DataError:
    """The DataError for ``find_missing``'s result: how many, the first few with what each is instead of
    an image file, and the fix that fits (the image root for missing files)."""
    reasons = _parallel(lambda p: file_problem(p) or "does not exist", [paths[i] for i in missing])
    absent = sum(r.startswith("does not exist") for r in reasons)
    shown = "\n  ".join(paths[i] if r == "does not exist" and absent == len(missing) else f"{paths[i]}: {r}"
                        for i, r in zip(missing[:5], reasons[:5]))
    root_hint = ("Set data.image_root to the folder the fpaths are relative to, or rewrite the paths with "
                 "`fcc data replace-path`.")
    if absent == len(missing):
        return DataError(f"{source}: {len(missing)} of {len(paths)} image files do not exist "
                         f"(relative fpaths resolve against {root}); the first:\n  {shown}\n{root_hint}")
    others = len(missing) - absent
    not_files = f"{others} {'is not a regular file' if others == 1 else 'are not regular files'}"
    counts = f"{absent} {'does' if absent == 1 else 'do'} not exist, {not_files}" if absent else not_files
    return DataError(f"{source}: {len(missing)} of {len(paths)} image paths are not image files ({counts}; "
                     f"relative fpaths resolve against {root}); the first:\n  {shown}\n"
                     f"Every fpath must name an image file: correct or remove these entries."
                     f"{' ' + root_hint if absent else ''}")


def check_files(paths: Sequence[str], level: str, source: str, root: str | Path,
                skip_bad: bool = False) -> list[int]:
    """Check image files before training; returns the indices of unreadable files that are skipped.

    ``level``: 'none', 'exists' (every file exists), 'header' (and PIL can read its header) or 'decode'
    (and it decodes completely, which finds truncated files). Missing files are always an error; files
    that exist but cannot be read are an error too unless ``skip_bad``.
    """
    if level == "none":
        return []
    missing = find_missing(paths)
    if missing:
        raise missing_files_error(source, paths, missing, root)
    if level == "exists":
        return []
    problems = _parallel(lambda p: _open_problem(p, level), paths)
    bad = [i for i, p in enumerate(problems) if p is not None]
    if bad and not skip_bad:
        shown = "\n  ".join(f"{paths[i]}: {problems[i]}" for i in bad[:5])
        raise DataError(f"{source}: {len(bad)} of {len(paths)} image files cannot be read; the first:\n  {shown}\n"
                        "Replace or remove them, or set data.skip_bad_images=true to leave them out.")
    return bad


def read_sizes(paths: Iterable[str]) -> list[tuple[int, int] | None]:
    """(height, width) of each image from its header only (PIL opens lazily), None if unreadable."""
    from PIL import Image

    def size(path: str) -> tuple[int, int] | None:
        try:
            with Image.open(path) as img:
                w, h = img.size
            return h, w
        except Exception:  # any unreadable file: the caller reports it with its path
            return None

    return _parallel(size, list(paths))
