"""The JSON annotation format: reading, validation errors (file, entry index, field), writing, file checks."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcc_lt.data.annotations import (
    Annotations,
    check_classes_present,
    check_files,
    parse_annotations,
    read_annotations,
    resolve_paths,
    write_annotations,
)
from fcc_lt.util.errors import DataError, FccError
from image_fixtures import write_folder, write_json


def entry(i: int, label: int = 0, **kw: object) -> dict[str, object]:
    return {"image_id": i, "fpath": f"img/{i}.png", "category_id": label, "im_height": 4, "im_width": 5, **kw}


def dump(tmp_path: Path, data: object, name: str = "ann.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_read_valid_file(tmp_path: Path) -> None:
    data = {"annotations": [entry(0, 1), entry(1, 0), {"image_id": "x", "fpath": "/abs/a.jpg", "category_id": 2,
                                                       "im_shape": [3, 4]}],
            "num_classes": 3, "class_names": ["a", "b", "c"]}
    ann = read_annotations(dump(tmp_path, data))
    assert len(ann) == 3
    assert ann.labels.tolist() == [1, 0, 2]
    assert ann.image_ids == [0, 1, "x"]
    assert ann.heights.tolist() == [4, 4, 0] and ann.widths.tolist() == [5, 5, 0]
    assert ann.class_names == ["a", "b", "c"]
    assert ann.class_counts.tolist() == [1, 1, 1]
    assert not ann.sizes_known
    assert resolve_paths(ann, "/root") == ["/root/img/0.png", "/root/img/1.png", "/abs/a.jpg"]


def test_write_read_roundtrip(tmp_path: Path) -> None:
    ann = Annotations([5, 7], ["a.png", "b/c.png"], np.array([1, 0]), 2, np.array([3, 0]), np.array([4, 0]),
                      class_names=["x", "y"])
    path = tmp_path / "out" / "ann.json"
    write_annotations(path, ann)
    raw = json.loads(path.read_text())
    assert raw["annotations"][0] == {"image_id": 5, "fpath": "a.png", "category_id": 1, "im_height": 3,
                                     "im_width": 4}
    assert "im_height" not in raw["annotations"][1]  # unknown sizes are left out, not written as 0
    back = read_annotations(path)
    assert back.image_ids == [5, 7] and back.fpaths == ["a.png", "b/c.png"] and back.labels.tolist() == [1, 0]
    assert back.class_names == ["x", "y"]
    assert not list(path.parent.glob(".*tmp*"))  # the atomic write left no temporary file


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda e: e.pop("category_id"), "annotations[1]: missing key 'category_id'"),
    (lambda e: e.pop("fpath"), "annotations[1]: missing key 'fpath'"),
    (lambda e: e.update(category_id=3), "annotations[1].category_id: expected an integer in [0, 2]"),
    (lambda e: e.update(category_id=-1), "annotations[1].category_id: expected an integer in [0, 2]"),
    (lambda e: e.update(category_id=1.0), "annotations[1].category_id: expected an integer"),
    (lambda e: e.update(category_id="1"), "annotations[1].category_id: expected an integer"),
    (lambda e: e.update(category_id=True), "annotations[1].category_id: expected an integer"),
    (lambda e: e.update(image_id=0), "annotations[1].image_id: 0 is also the image_id of annotations[0]"),
    (lambda e: e.update(image_id=[1]), "annotations[1].image_id: expected an integer or a non-empty string"),
    (lambda e: e.update(fpath=""), "annotations[1].fpath: expected a non-empty file path string"),
    (lambda e: e.update(fpath=7), "annotations[1].fpath: expected a non-empty file path string"),
    (lambda e: e.update(im_height=0), "annotations[1].im_height: expected a positive integer"),
    (lambda e: e.update(im_width="5"), "annotations[1].im_width: expected a positive integer"),
])
def test_entry_errors_name_file_index_and_field(tmp_path: Path, mutate: object, expected: str) -> None:
    entries = [entry(0), entry(1, 1), entry(2, 2)]
    mutate(entries[1])  # type: ignore[operator]
    path = dump(tmp_path, {"annotations": entries, "num_classes": 3})
    with pytest.raises(DataError) as err:
        read_annotations(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


@pytest.mark.parametrize(("data", "expected"), [
    ([], "expected a JSON object"),
    ({"num_classes": 2}, "missing top-level key 'annotations'"),
    ({"annotations": [entry(0)]}, "missing top-level key 'num_classes'"),
    ({"annotations": [entry(0)], "num_classes": 0}, "num_classes: expected an integer in [1,"),
    ({"annotations": [entry(0)], "num_classes": "2"}, "num_classes: expected an integer"),
    ({"annotations": {}, "num_classes": 2}, "annotations: expected a list of objects"),
    ({"annotations": [], "num_classes": 2}, "annotations: the list is empty"),
    ({"annotations": [5], "num_classes": 2}, "annotations[0]: expected an object, got int"),
    ({"annotations": [entry(0)], "num_classes": 2, "class_names": ["a"]}, "class_names: expected a list of 2"),
])
def test_top_level_errors(tmp_path: Path, data: object, expected: str) -> None:
    path = dump(tmp_path, data)
    with pytest.raises(DataError, match=None) as err:
        read_annotations(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="annotation file not found"):
        read_annotations(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"annotations": [')
    with pytest.raises(DataError, match=r"bad\.json: not valid JSON"):
        read_annotations(bad)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(DataError, match="not valid JSON"):
        read_annotations(binary)


def test_many_problems_are_counted_and_the_first_ten_shown(tmp_path: Path) -> None:
    entries = [entry(i, label=9) for i in range(25)]
    with pytest.raises(DataError) as err:
        read_annotations(dump(tmp_path, {"annotations": entries, "num_classes": 3}))
    text = str(err.value)
    assert "25 problems" in text and "... and 15 more" in text
    assert "annotations[9].category_id" in text and "annotations[10].category_id" not in text


def test_empty_class_is_named(tmp_path: Path) -> None:
    ann = parse_annotations({"annotations": [entry(0, 0), entry(1, 2)], "num_classes": 4,
                             "class_names": ["a", "b", "c", "d"]}, "train.json")
    with pytest.raises(DataError) as err:
        check_classes_present(ann)
    assert "train.json: 2 of 4 classes have no training images: 1 (b), 3 (d)" in str(err.value)


def test_missing_files_are_counted_and_listed(tmp_path: Path) -> None:
    rows = write_folder(tmp_path / "imgs", [3])
    entries = [*rows, ("class_00/missing_a.png", 0), ("class_00/missing_b.png", 0)]
    path = write_json(tmp_path / "a.json", entries, 1)
    ann = read_annotations(path)
    paths = resolve_paths(ann, tmp_path / "imgs")
    with pytest.raises(DataError) as err:
        check_files(paths, "exists", str(path), tmp_path / "imgs")
    text = str(err.value)
    assert "2 of 5 image files do not exist" in text and "missing_a.png" in text and "missing_b.png" in text
    assert "data.image_root" in text
    assert check_files(paths[:3], "decode", str(path), tmp_path / "imgs") == []
    assert check_files(paths, "none", str(path), tmp_path) == []


def test_corrupt_and_truncated_files(tmp_path: Path) -> None:
    rows = write_folder(tmp_path, [3], fmt="jpg", size=(64, 64))
    paths = [str(tmp_path / p) for p, _ in rows]
    Path(paths[0]).write_bytes(b"not an image at all")
    data = Path(paths[1]).read_bytes()
    Path(paths[1]).write_bytes(data[: len(data) // 2])  # header intact, data cut short
    with pytest.raises(DataError) as err:
        check_files(paths, "header", "x.json", tmp_path)
    assert "1 of 3 image files cannot be read" in str(err.value) and paths[0] in str(err.value)
    with pytest.raises(DataError) as err:
        check_files(paths, "decode", "x.json", tmp_path)
    assert "2 of 3" in str(err.value) and paths[1] in str(err.value)
    assert check_files(paths, "decode", "x.json", tmp_path, skip_bad=True) == [0, 1]


# ---------------------------------------------------------------------------- property-based testing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
field_values = st.one_of(st.integers(-3, 5), st.text(max_size=4), st.none(), st.floats(), st.booleans(),
                         st.lists(st.integers(), max_size=2))
entries_st = st.lists(
    st.dictionaries(st.sampled_from(["image_id", "fpath", "category_id", "im_height", "im_width", "other"]),
                    field_values, max_size=6),
    max_size=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    json_values,
    st.fixed_dictionaries({"annotations": entries_st, "num_classes": field_values}),
    st.fixed_dictionaries({"annotations": entries_st, "num_classes": st.integers(1, 6),
                           "class_names": st.one_of(st.none(), st.lists(st.text(max_size=3), max_size=6))}),
))
def test_any_json_loads_or_raises_our_error(raw: object) -> None:
    try:
        ann = parse_annotations(raw, "fuzz.json")
    except FccError as err:
        assert str(err).startswith("fuzz.json")
        return
    # whatever loads is a consistent, valid dataset
    assert len(ann) >= 1
    assert ((ann.labels >= 0) & (ann.labels < ann.num_classes)).all()
    assert len(set(ann.image_ids)) == len(ann)
    assert all(isinstance(p, str) and p for p in ann.fpaths)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_load_or_raise_our_error(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.json"
        path.write_bytes(data)
        with contextlib.suppress(FccError):
            read_annotations(path)


def test_deep_nesting_is_our_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(DataError):
        read_annotations(path)
