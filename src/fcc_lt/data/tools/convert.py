"""Dataset tools behind `fcc data ...`: other formats to the JSON annotation format, and edits of it.

Each tool is a function that does the work and returns a short summary (what the CLI prints), so
tests and scripts can call it directly. Outputs are written atomically and only after all inputs were
read and checked: a failed conversion never leaves a JSON file that looks finished.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fcc_lt.data.annotations import (
    Annotations,
    find_missing,
    load_json,
    missing_files_error,
    parse_annotations,
    read_annotations,
    read_sizes,
    write_annotations,
)
from fcc_lt.data.cifar import long_tail_counts
from fcc_lt.data.images import IMAGE_EXTENSIONS, scan_folder
from fcc_lt.util.errors import ConfigError, DataError, short_repr
from fcc_lt.util.files import read_input_text, write_json


@dataclass
class Written:
    """One annotation file a tool wrote, with what the CLI reports about it."""

    path: Path
    entries: int
    num_classes: int
    counts: np.ndarray

    def describe(self) -> str:
        present = self.counts[self.counts > 0]
        spread = f", {present.min()}..{present.max()} per class" if len(present) else ""
        return (f"{self.path}: {self.entries} images, {len(present)} of {self.num_classes} classes "
                f"present{spread}")


def _written(path: Path, ann: Annotations) -> Written:
    return Written(path, len(ann), ann.num_classes, ann.class_counts)


def _check_out(out: Path, inputs: Sequence[Path]) -> None:
    for p in inputs:
        if out.resolve() == Path(p).resolve():
            raise ConfigError(f"{out}: the output would overwrite the input file; choose another output path")


def convert_tfrecords(input_dir: Path, out_dir: Path, prefix: str | None = None,
                      num_classes: int | None = None, splits: Sequence[tuple[str, str]] = (
                          ("train", "train"), ("eval", "valid"))) -> list[Written]:
    """Cui et al.'s long-tailed CIFAR TFRecords -> lossless PNGs plus ``<prefix>_{train,valid}.json``.

    Reads ``input_dir/{train,eval}.tfrecords`` (tf.train.Example records: ``image`` = raw uint8 pixels in
    CHW order, ``label`` = int64). Images go to ``out_dir/<prefix>/images/<label>/<mode>_<i>.png`` and
    the JSON ``fpath``s are relative to ``out_dir``, the JSON files' folder, so the output folder can be
    moved as a whole. ``num_classes`` defaults to the largest label in any split plus one.
    """
    from PIL import Image

    from fcc_lt.data.tools.tfrecord import read_examples

    input_dir = Path(input_dir)
    prefix = prefix or input_dir.resolve().name
    loaded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for mode, _ in splits:
        path = input_dir / f"{mode}.tfrecords"
        images, labels = [], []
        for i, ex in enumerate(read_examples(path)):
            for key in ("image", "label"):
                if key not in ex:
                    raise DataError(f"{path}: record {i}: no feature {key!r} (has {sorted(ex)})")
            image, label = ex["image"], ex["label"]
            if len(image) != 1 or not isinstance(image[0], bytes):
                raise DataError(f"{path}: record {i}: feature 'image' must hold one bytes value")
            if len(label) != 1 or not isinstance(label[0], int):
                raise DataError(f"{path}: record {i}: feature 'label' must hold one int64 value, got {label!r}")
            raw = image[0]
            side = math.isqrt(len(raw) // 3)
            if len(raw) == 0 or 3 * side * side != len(raw):
                raise DataError(f"{path}: record {i}: 'image' has {len(raw)} bytes, not the 3*H*H of a square "
                                "RGB image in CHW order")
            images.append(np.frombuffer(raw, dtype=np.uint8).reshape(3, side, side))
            labels.append(label[0])
        if not images:
            raise DataError(f"{path}: holds no records")
        label_arr = np.asarray(labels, dtype=np.int64)
        if label_arr.min() < 0:
            bad = int(np.flatnonzero(label_arr < 0)[0])
            raise DataError(f"{path}: record {bad}: negative label {label_arr[bad]}")
        loaded[mode] = (np.stack(images) if len({im.shape for im in images}) == 1 else images, label_arr)
    largest = max(int(lab.max()) for _, lab in loaded.values())
    if num_classes is None:
        num_classes = largest + 1
    elif largest >= num_classes:
        raise DataError(f"{input_dir}: label {largest} found, but --num-classes is {num_classes}")

    out_dir = Path(out_dir)
    written = []
    for mode, suffix in splits:
        images, labels = loaded[mode]
        rel = [f"{prefix}/images/{int(c)}/{mode}_{i}.png" for i, c in enumerate(labels)]
        for c in np.unique(labels):
            (out_dir / prefix / "images" / str(int(c))).mkdir(parents=True, exist_ok=True)

        def save(i: int, images: Any = images, rel: list[str] = rel) -> None:
            Image.fromarray(np.ascontiguousarray(np.asarray(images[i]).transpose(1, 2, 0))).save(
                out_dir / rel[i], format="PNG")

        with ThreadPoolExecutor(max_workers=8) as pool:  # PNG compression releases the GIL
            list(pool.map(save, range(len(labels))))
        sides = np.asarray([np.asarray(im).shape[1] for im in images], dtype=np.int64)
        ann = Annotations(list(range(len(labels))), rel, labels, num_classes, sides, sides,
                          source=f"{input_dir / mode}.tfrecords")
        path = out_dir / f"{prefix}_{suffix}.json"
        write_annotations(path, ann)
        written.append(_written(path, ann))
    return written


def read_list(path: Path) -> tuple[list[str], np.ndarray]:
    """A split list of "relative/path label" lines (the ImageNet-LT / iNat18 release format)."""
    text = read_input_text(path, "split list")
    paths, labels = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path}: line {number}: expected 'relative/path label', got {line[:80]!r}")
        label = int(parts[1])
        if label < 0:
            raise DataError(f"{path}: line {number}: negative label {label}")
        paths.append(parts[0].strip())
        labels.append(label)
    if not paths:
        raise DataError(f"{path}: the split list is empty")
    return paths, np.asarray(labels, dtype=np.int64)


def _fpaths(rel: Sequence[str], image_root: Path, relative: bool) -> tuple[list[str], list[str]]:
    """(paths written to the JSON, paths on disk): absolute unless ``relative``."""
    root = Path(image_root).resolve()
    on_disk = [os.path.join(root, r) for r in rel]
    return (list(rel) if relative else on_disk), on_disk


def _sizes(on_disk: list[str], source: str, image_root: Path) -> tuple[np.ndarray, np.ndarray]:
    missing = find_missing(on_disk)
    if missing:
        raise missing_files_error(source, on_disk, missing, image_root)
    sizes = read_sizes(on_disk)
    bad = [i for i, s in enumerate(sizes) if s is None]
    if bad:
        shown = "\n  ".join(on_disk[i] for i in bad[:5])
        raise DataError(f"{source}: {len(bad)} files are not readable images; the first:\n  {shown}\n"
                        "(pass --no-sizes to write the JSON without reading the images)")
    arr = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def convert_lists(lists: Sequence[Path], image_root: Path, out_dir: Path, *, sizes: bool = True,
                  num_classes: int | None = None, relative: bool = False) -> list[Written]:
    """Split lists ("relative/path label" per line) -> one JSON per list, ``out_dir/<list stem>.json``.

    ``num_classes`` defaults to the largest label in any of the lists plus one (1000 for ImageNet-LT).
    ``fpath`` is ``image_root/relative/path`` made absolute (or the list's path as it is with
    ``relative``: then set data.image_root at training time). Image sizes are read from the file
    headers unless ``sizes`` is false, which also allows converting lists without the images.
    """
    parsed = [(Path(p), *read_list(Path(p))) for p in lists]
    largest = max(int(labels.max()) for _, _, labels in parsed)
    if num_classes is None:
        num_classes = largest + 1
    written = []
    for path, rel, labels in parsed:
        if labels.max() >= num_classes:
            line = int(np.flatnonzero(labels >= num_classes)[0])
            raise DataError(f"{path}: entry {line}: label {labels[line]} is not below --num-classes {num_classes}")
        fpaths, on_disk = _fpaths(rel, image_root, relative)
        heights = widths = np.zeros(len(rel), dtype=np.int64)
        if sizes:
            heights, widths = _sizes(on_disk, str(path), image_root)
        ann = Annotations(list(range(len(rel))), fpaths, labels, num_classes, heights, widths, source=str(path))
        out = Path(out_dir) / f"{path.stem}.json"
        _check_out(out, lists)
        write_annotations(out, ann)
        written.append(_written(out, ann))
    return written


def _coco_list(raw: dict[str, Any], key: str, source: str) -> list[dict[str, Any]]:
    items = raw.get(key)
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise DataError(f"{source}: {key!r}: expected a list of objects (an iNaturalist/COCO-style file)")
    return items


def convert_inat(input_json: Path, image_root: Path, out: Path, *, relative: bool = False,
                 remap_categories: bool = False) -> Written:
    """An official iNaturalist 2018 annotation file (COCO-like) -> our JSON.

    Images and labels are matched by ``image_id`` (the original zipped the two lists and relied on
    their order); every image needs exactly one annotation. num_classes = len(categories), the ids
    must be 0..C-1 (true for iNat18) unless ``remap_categories`` maps the sorted ids to 0..C-1.
    Category names become ``class_names``.
    """
    source = str(input_json)
    raw = load_json(input_json)
    images = _coco_list(raw, "images", source)
    annotations = _coco_list(raw, "annotations", source)
    categories = _coco_list(raw, "categories", source)
    if not annotations:
        raise DataError(f"{source}: has no annotations (an unlabelled test file cannot be converted)")
    cat_ids = []
    for i, cat in enumerate(categories):
        if not isinstance(cat.get("id"), int) or isinstance(cat.get("id"), bool):
            raise DataError(f"{source}: categories[{i}].id: expected an integer, got {cat.get('id')!r}")
        cat_ids.append(cat["id"])
    names_by_id = {c["id"]: str(c.get("name", c["id"])) for c in categories}
    if len(set(cat_ids)) != len(cat_ids):
        raise DataError(f"{source}: categories: duplicate category ids")
    ordered = sorted(cat_ids)
    if ordered != list(range(len(cat_ids))) and not remap_categories:
        raise DataError(f"{source}: category ids are not 0..{len(cat_ids) - 1}; pass --remap-categories to "
                        "number them 0..C-1 in increasing id order (class_names keep the names)")
    to_label = {cid: k for k, cid in enumerate(ordered)}
    label_of: dict[Any, int] = {}
    for i, a in enumerate(annotations):
        image_id, cat = a.get("image_id"), a.get("category_id")
        if image_id in label_of:
            raise DataError(f"{source}: annotations[{i}].image_id: image {image_id!r} has a second annotation")
        if cat not in to_label or isinstance(cat, bool):
            raise DataError(f"{source}: annotations[{i}].category_id: {cat!r} is not a category id")
        label_of[image_id] = to_label[cat]
    ids, rel, labels, heights, widths = [], [], [], [], []
    for i, im in enumerate(images):
        for key in ("id", "file_name"):
            if key not in im:
                raise DataError(f"{source}: images[{i}]: missing key {key!r}")
        if im["id"] not in label_of:
            raise DataError(f"{source}: images[{i}]: image {im['id']!r} has no annotation")
        ids.append(im["id"])
        rel.append(str(im["file_name"]))
        labels.append(label_of.pop(im["id"]))
        h, w = im.get("height", 0), im.get("width", 0)
        heights.append(h if isinstance(h, int) and h > 0 else 0)
        widths.append(w if isinstance(w, int) and w > 0 else 0)
    if label_of:
        orphan = next(iter(label_of))
        raise DataError(f"{source}: {len(label_of)} annotations refer to images not in 'images' "
                        f"(for example image_id {orphan!r})")
    fpaths, _ = _fpaths(rel, image_root, relative)
    out = Path(out)
    if out.is_dir():
        out = out / f"iNat18_{Path(input_json).stem}.json"
    _check_out(out, [input_json])
    ann = Annotations(ids, fpaths, np.asarray(labels), len(cat_ids), np.asarray(heights), np.asarray(widths),
                      class_names=[names_by_id[c] for c in ordered], source=source)
    parse_annotations(ann.to_json(), source)  # the result must pass our own validation
    write_annotations(out, ann)
    return _written(out, ann)


# Folder names that name a split, not a class: ROOT/train/<class>/... given as ROOT is the likely mistake
SPLIT_NAMES = frozenset({"train", "training", "test", "testing", "val", "valid", "validation", "eval", "dev"})


def _split_folders(root: Path, found: Sequence[str], files: Sequence[Sequence[str]]) -> None:
    """Refuse (or, if their images lie directly in them, warn about) "classes" that are all split names."""
    if not found or not all(name.lower() in SPLIT_NAMES for name in found):
        return
    nested = [f for class_files in files for f in class_files if len(Path(f).parts) > 2]
    shown = ", ".join(found)
    if nested:
        raise DataError(f"{root}: its folders ({shown}) look like splits, not classes: their images are in class "
                        f"sub-folders (e.g. {nested[0]}), so this would be a {len(found)}-class dataset named "
                        f"{shown}. Convert each split on its own: fcc data from-folder {root / found[0]} --out "
                        f"{found[0]}.json, then the others with --class-names-from {found[0]}.json")
    import warnings

    warnings.warn(f"{root}: every class folder has a split's name ({shown}); if these are splits rather than "
                  "classes, convert each split folder on its own", stacklevel=3)


def convert_folder(root: Path, out: Path, *, sizes: bool = True, relative: bool = False,
                   class_names: Sequence[str] | None = None) -> Written:
    """A class-per-folder image tree -> JSON with ``class_names``; classes sorted by folder name.

    ``class_names`` (for example those of the training split's JSON) fixes the class order instead,
    so a test folder missing a class still gets the training split's ids. A ROOT whose folders are all
    split names (train, test, val, ...) holding class folders is refused: the user meant ROOT/train.
    """
    found, files = scan_folder(root)
    _split_folders(Path(root), found, files)
    names = list(class_names) if class_names is not None else found
    index = {n: k for k, n in enumerate(names)}
    unknown = [n for n in found if n not in index]
    if unknown:
        raise DataError(f"{root}: class folders {unknown[:5]} are not among the given class names")
    rel, labels = [], []
    for name, class_files in zip(found, files):
        rel += class_files
        labels += [index[name]] * len(class_files)
    if not rel:
        raise DataError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in the class folders")
    fpaths, on_disk = _fpaths(rel, root, relative)
    heights = widths = np.zeros(len(rel), dtype=np.int64)
    if sizes:
        heights, widths = _sizes(on_disk, str(root), root)
    ann = Annotations(list(range(len(rel))), fpaths, np.asarray(labels), len(names), heights, widths,
                      class_names=names, source=str(root))
    write_annotations(out, ann)
    return _written(Path(out), ann)


def replace_path(json_file: Path, find: str, replace: str, out: Path | None = None) -> tuple[int, int]:
    """Rewrite the ``fpath`` prefix ``find`` to ``replace`` in every entry; returns (changed, total).

    The prefix matches whole path components: ``/data/img`` matches ``/data/img/a.jpg`` but not
    ``/data/images/a.jpg``. Every other key of the file is kept; the write is atomic.
    """
    if not find:
        raise ConfigError("--find: expected the path prefix to replace, got an empty string")
    raw = load_json(json_file)
    parse_annotations(raw, str(json_file))
    old = find.rstrip("/") or "/"
    prefix = old if old == "/" else old + "/"
    new = replace.rstrip("/") or ("/" if replace.startswith("/") else "")
    changed = 0
    for entry in raw["annotations"]:
        fpath = entry["fpath"]
        if fpath.startswith(prefix):
            rest = fpath[len(prefix):]
            entry["fpath"] = rest if not new else (new + rest if new.endswith("/") else f"{new}/{rest}")
            changed += 1
    if not changed:
        shown = "; ".join(short_repr(a["fpath"], 80) for a in raw["annotations"][:3])
        raise DataError(f"{json_file}: no fpath starts with {find!r} (matched as whole path components), so "
                        f"nothing was rewritten or written; its paths start like: {shown or 'no entries'}")
    write_json(out or json_file, raw, compact=True)
    return changed, len(raw["annotations"])


def make_long_tailed(json_file: Path, out: Path, imbalance: float, *, max_per_class: int | None = None,
                     seed: int = 0, order: str = "index") -> tuple[Written, int]:
    """A long-tailed subset of a JSON dataset with the exponential profile of the CIFAR-LT protocol.

    The class of rank k keeps floor(n_max * IF^(-k/(C-1))) images (``fcc_lt.data.cifar.long_tail_counts``),
    n_max defaulting to the largest class. Rank is the class id (``order='index'``, the CIFAR-LT
    convention) or the current class size, largest first, ties by id (``order='size'``). Each class, in
    ascending id order, is shuffled once by a NumPy RandomState(seed) and its first images kept; a class
    smaller than its target keeps all of them (the count of such classes is returned). Kept entries stay
    in file order with every key they had.
    """
    if imbalance < 1:
        raise ConfigError(f"--imbalance: expected a number >= 1, got {imbalance}")
    if order not in ("index", "size"):
        raise ConfigError(f"--order: expected 'index' or 'size', got {order!r}")
    raw = load_json(json_file)
    ann = parse_annotations(raw, str(json_file))
    counts = ann.class_counts
    n_max = int(max_per_class or counts.max())
    if n_max < 1:
        raise ConfigError(f"--max-per-class: expected an integer >= 1, got {n_max}")
    profile = long_tail_counts(ann.num_classes, imbalance, n_max)
    ranks = np.argsort(-counts, kind="stable") if order == "size" else np.arange(ann.num_classes)
    target = np.zeros(ann.num_classes, dtype=np.int64)
    target[ranks] = profile
    empty = [c for c in range(ann.num_classes) if target[c] == 0 or counts[c] == 0]
    if empty:
        names = ", ".join(str(c) if ann.class_names is None else f"{c} ({ann.class_names[c]})" for c in empty[:5])
        more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        if any(target[c] == 0 for c in empty):
            why = (f"--imbalance {imbalance:g} with {n_max} images in the largest class gives them 0 (the factor "
                   f"can be at most {n_max}; or raise --max-per-class)")
        else:
            why = f"{json_file} has no images of them"
        raise DataError(f"make-lt would leave {len(empty)} class(es) without images: {names}{more}: {why}")
    rng = np.random.RandomState(seed)
    keep = []
    short = 0
    for c in range(ann.num_classes):
        idx = np.flatnonzero(ann.labels == c)
        if len(idx) < target[c]:
            short += 1
        rng.shuffle(idx)
        keep.append(idx[: target[c]])
    kept = np.sort(np.concatenate(keep))
    _check_out(Path(out), [json_file])
    raw["annotations"] = [raw["annotations"][i] for i in kept.tolist()]
    write_json(out, raw, compact=True)
    sub = ann.subset(kept)
    return _written(Path(out), sub), short


def read_class_names(json_file: Path) -> list[str]:
    ann = read_annotations(json_file)
    if ann.class_names is None:
        raise DataError(f"{json_file}: has no class_names to take the class order from")
    return ann.class_names
