"""Property-based tests of the annotation reader, attacker style: start from a valid file, break it in
one place (or cut it short), and require either a consistent load or a DataError that names the file
and, for a broken entry, that entry. Valid files load exactly and survive a write/read round trip;
fpaths come back literally, whatever characters they hold."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcc_lt.data.annotations import read_annotations, resolve_paths, write_annotations
from fcc_lt.util.errors import DataError

SETTINGS = settings(max_examples=int(os.environ.get("FCC_HYPOTHESIS_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# file names as users (and attackers) write them: shell syntax, ~, $VAR, globs, unicode, spaces
fpaths = st.one_of(
    st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s),
    st.sampled_from(["$(touch pwned).jpg", "`id`.png", "~root/x.jpg", "${HOME}/y.jpg", "a b;rm -rf /.jpg", "*.jpg",
                     "../../etc/passwd", "/abs/path.jpg", "dir/./x.jpg", "café/ü.jpg", " lead.jpg", "new\nline.jpg"]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def valid_files(draw: st.DrawFn) -> dict[str, Any]:
    num_classes = draw(st.integers(1, 5))
    n = draw(st.integers(1, 8))
    ids = draw(st.lists(st.one_of(st.integers(-10**12, 10**12), st.text(min_size=1, max_size=6)),
                        min_size=n, max_size=n, unique=True))
    entries = []
    for image_id in ids:
        entry: dict[str, Any] = {"image_id": image_id, "fpath": draw(fpaths),
                                 "category_id": draw(st.integers(0, num_classes - 1))}
        if draw(st.booleans()):
            entry["im_height"], entry["im_width"] = draw(st.integers(1, 5000)), draw(st.integers(1, 5000))
        if draw(st.booleans()):
            entry["note"] = draw(json_values)  # extra keys are allowed and ignored
        entries.append(entry)
    raw: dict[str, Any] = {"num_classes": num_classes, "annotations": entries}
    if draw(st.booleans()):
        raw["class_names"] = draw(st.lists(st.text(max_size=6), min_size=num_classes, max_size=num_classes))
    return raw


def write(path: Path, raw: Any) -> Path:
    path.write_text(json.dumps(raw, allow_nan=True), encoding="utf-8")
    return path


def assert_loads_exactly(path: Path, raw: dict[str, Any]) -> None:
    ann = read_annotations(path)
    entries = raw["annotations"]
    assert ann.num_classes == raw["num_classes"] and ann.class_names == raw.get("class_names")
    assert ann.image_ids == [e["image_id"] for e in entries]
    assert ann.fpaths == [e["fpath"] for e in entries]
    assert ann.labels.tolist() == [e["category_id"] for e in entries]
    assert ann.heights.tolist() == [e.get("im_height", 0) for e in entries]
    assert ann.widths.tolist() == [e.get("im_width", 0) for e in entries]


@SETTINGS
@given(raw=valid_files())
def test_valid_files_load_exactly_and_round_trip(tmp_path: Path, raw: dict[str, Any]) -> None:
    path = write(tmp_path / "a.json", raw)
    assert_loads_exactly(path, raw)
    again = tmp_path / "b.json"
    write_annotations(again, read_annotations(path))
    assert_loads_exactly(again, raw)


@SETTINGS
@given(raw=valid_files(), root=st.sampled_from(["/data/images", "rel/root", "~user/imgs"]))
def test_fpaths_are_joined_literally(raw: dict[str, Any], root: str) -> None:
    """No expansion of ~ or variables, no normalisation: relative fpaths are root + separator + fpath."""
    from fcc_lt.data.annotations import parse_annotations

    ann = parse_annotations(raw, "x.json")
    for fpath, resolved in zip(ann.fpaths, resolve_paths(ann, root)):
        assert resolved == fpath if fpath.startswith("/") else resolved == root + os.sep + fpath


MUTATIONS = ["drop_key", "set_field", "duplicate_id", "non_object_entry", "top_level", "drop_top_key"]


@SETTINGS
@given(raw=valid_files(), mutation=st.sampled_from(MUTATIONS), data=st.data())
def test_one_broken_place_loads_consistently_or_is_named(tmp_path: Path, raw: dict[str, Any], mutation: str,
                                                        data: st.DataObject) -> None:
    entries = raw["annotations"]
    i = data.draw(st.integers(0, len(entries) - 1))
    if mutation == "drop_key":
        entries[i].pop(data.draw(st.sampled_from(["image_id", "fpath", "category_id"])))
    elif mutation == "set_field":
        key = data.draw(st.sampled_from(["image_id", "fpath", "category_id", "im_height", "im_width"]))
        entries[i][key] = data.draw(st.one_of(json_values, st.integers(), st.text(max_size=4)))
    elif mutation == "duplicate_id" and len(entries) > 1:
        entries[i]["image_id"] = entries[i - 1]["image_id"]
    elif mutation == "non_object_entry":
        entries[i] = data.draw(json_values.filter(lambda v: not isinstance(v, dict)))
    elif mutation == "top_level":
        raw[data.draw(st.sampled_from(["num_classes", "annotations", "class_names"]))] = data.draw(json_values)
    elif mutation == "drop_top_key":
        raw.pop(data.draw(st.sampled_from(["num_classes", "annotations"])))
    path = write(tmp_path / "m.json", raw)
    try:
        ann = read_annotations(path)
    except DataError as err:
        text = str(err)
        assert text.startswith(f"{path}: "), text
        if "problem" in text and mutation in ("drop_key", "set_field", "non_object_entry", "duplicate_id"):
            assert f"annotations[{i}]" in text, text  # the broken entry is the one named
        return
    # whatever loads is a consistent dataset
    n = len(ann)
    assert n >= 1 and len(ann.image_ids) == len(set(ann.image_ids)) == n
    assert ((ann.labels >= 0) & (ann.labels < ann.num_classes)).all()
    assert all(isinstance(p, str) and p and "\x00" not in p for p in ann.fpaths)
    assert (ann.heights >= 0).all() and (ann.widths >= 0).all()
    assert np.issubdtype(ann.labels.dtype, np.integer)


@SETTINGS
@given(raw=valid_files(), data=st.data())
def test_a_file_cut_short_is_not_valid_json(tmp_path: Path, raw: dict[str, Any], data: st.DataObject) -> None:
    text = json.dumps(raw).encode("utf-8")
    cut = data.draw(st.integers(0, len(text) - 1))
    path = tmp_path / "cut.json"
    path.write_bytes(text[:cut])
    try:
        read_annotations(path)
    except DataError as err:
        assert str(err).startswith(f"{path}: not valid JSON") or str(err).startswith(f"{path}: expected a JSON")
    else:
        raise AssertionError(f"a file cut at byte {cut} of {len(text)} loaded")
