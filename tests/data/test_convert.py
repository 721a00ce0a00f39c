"""Dataset tools: TFRecord/CRC32C/Example parsing, and every `fcc data` converter on generated inputs."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcc_lt.cli.main import main
from fcc_lt.data.annotations import read_annotations
from fcc_lt.data.cifar import long_tail_counts
from fcc_lt.data.tools.convert import (
    convert_folder,
    convert_inat,
    convert_lists,
    convert_tfrecords,
    make_long_tailed,
    read_list,
    replace_path,
)
from fcc_lt.data.tools.tfrecord import (
    crc32c,
    crc32c_many,
    encode_example,
    frame_record,
    mask,
    parse_example,
    read_examples,
    read_records,
    write_records,
)
from fcc_lt.util.errors import ConfigError, DataError
from image_fixtures import write_folder, write_json

# ------------------------------------------------------------------------------------------ CRC32C


def crc32c_bitwise(data: bytes) -> int:
    """The textbook bit-at-a-time CRC32C (reflected polynomial 0x82F63B78): independent of the tables."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_answers() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 (iSCSI) test vector: 32 bytes of zeros
    assert crc32c(b"\xff" * 32) == 0x62A8AB43  # RFC 3720: 32 bytes of 0xff
    assert crc32c(bytes(range(32))) == 0x46DD794E  # RFC 3720: incrementing bytes
    assert crc32c(b"123456789") != zlib.crc32(b"123456789")  # not the zlib polynomial


def test_crc32c_vectorised_matches_bitwise() -> None:
    rng = np.random.default_rng(0)
    buffers = [rng.bytes(n) for n in (0, 1, 7, 8, 8, 8, 100, 100, 100, 3072, 3072, 65)]
    got = crc32c_many(buffers)
    assert got.dtype == np.uint32
    assert [int(v) for v in got] == [crc32c_bitwise(b) for b in buffers]


def test_mask_formula() -> None:
    for crc in (0, 1, 0xE3069283, 0xFFFFFFFF):
        expected = ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) % 2**32
        assert mask(crc) == expected
        assert int(mask(np.array([crc], dtype=np.uint32))[0]) == expected


# --------------------------------------------------------------------------------- TFRecord framing


def test_frame_layout_by_hand() -> None:
    data = b"hello"
    framed = frame_record(data)
    length = struct.pack("<Q", 5)
    assert framed[:8] == length
    assert struct.unpack("<I", framed[8:12])[0] == mask(crc32c_bitwise(length))
    assert framed[12:17] == data
    assert struct.unpack("<I", framed[17:])[0] == mask(crc32c_bitwise(data))


def test_records_roundtrip_and_bad_crc(tmp_path: Path) -> None:
    records = [b"a" * 10, b"", b"xyz" * 100, b"b" * 10]
    path = tmp_path / "ok.tfrecords"
    write_records(path, records)
    assert read_records(path) == records

    blob = bytearray(path.read_bytes())
    offset = sum(len(r) + 16 for r in records[:2]) + 12 + 5  # a byte inside record 2's data
    blob[offset] ^= 0x01
    bad = tmp_path / "bad.tfrecords"
    bad.write_bytes(bytes(blob))
    with pytest.raises(DataError) as err:
        read_records(bad)
    assert str(bad) in str(err.value) and "record 2: data CRC mismatch" in str(err.value)

    blob = bytearray(path.read_bytes())
    blob[len(records[0]) + 16] ^= 0x01  # record 1's length field
    bad.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="record 1: length CRC mismatch"):
        read_records(bad)

    cut = tmp_path / "cut.tfrecords"
    cut.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"record 3: .*truncated"):
        read_records(cut)


# ------------------------------------------------------------------------------- tf.train.Example


def test_example_bytes_derived_by_hand() -> None:
    # Example{features{feature{key: "label" value{int64_list{value: [7]}}}}}, from the protobuf spec:
    # map entry = 0a 05 "label" 12 05 (Feature: 1a 03 (Int64List: 0a 01 07, packed))
    expected = bytes.fromhex("0a10" "0a0e" "0a056c6162656c" "1205" "1a03" "0a0107")
    assert encode_example({"label": [7]}) == expected
    assert parse_example(expected) == {"label": [7]}


def test_example_roundtrip_packed_and_unpacked() -> None:
    features = {"image": [b"\x00\x01\xff"], "label": [3, -2, 2**40], "score": [0.5, -1.25], "empty": []}
    for packed in (True, False):
        got = parse_example(encode_example(features, packed=packed))
        assert got["image"] == [b"\x00\x01\xff"]
        assert got["label"] == [3, -2, 2**40]
        assert got["score"] == [0.5, -1.25]
        assert got["empty"] == []


def test_malformed_example_is_named(tmp_path: Path) -> None:
    path = tmp_path / "m.tfrecords"
    write_records(path, [encode_example({"label": [1]}), b"\x0a\xff\x01garbage"])
    with pytest.raises(DataError, match=r"m.tfrecords: record 1: not a valid tf.train.Example"):
        read_examples(path)


# ---------------------------------------------------------------------------------- Cui TFRecords


def write_cui(folder: Path, labels_by_split: dict[str, list[int]], seed: int = 0) -> dict[str, np.ndarray]:
    """train/eval.tfrecords as Cui et al.'s: raw CHW uint8 3x32x32 bytes and an int64 label."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    pixels = {}
    for mode, labels in labels_by_split.items():
        images = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
        pixels[mode] = images
        write_records(folder / f"{mode}.tfrecords",
                      [encode_example({"image": [im.tobytes()], "label": [lab]}, packed=i % 2 == 0)
                       for i, (im, lab) in enumerate(zip(images, labels))])
    return pixels


def test_tfrecords_to_png_and_json(tmp_path: Path) -> None:
    train_labels = [0] * 5 + [1] * 3 + [2] * 1
    eval_labels = [0, 1, 2, 0, 1, 2]
    src = tmp_path / "cifar-10-data-im-0.01"
    pixels = write_cui(src, {"train": train_labels, "eval": eval_labels})
    out = tmp_path / "out"
    written = convert_tfrecords(src, out)
    assert [w.path.name for w in written] == ["cifar-10-data-im-0.01_train.json", "cifar-10-data-im-0.01_valid.json"]
    train = read_annotations(out / "cifar-10-data-im-0.01_train.json")
    assert train.num_classes == 3 and train.class_counts.tolist() == [5, 3, 1]
    assert train.heights.tolist() == [32] * 9
    valid = read_annotations(out / "cifar-10-data-im-0.01_valid.json")
    assert valid.labels.tolist() == eval_labels
    # lossless: every PNG holds exactly the record's pixels (CHW -> HWC)
    for ann, images in ((train, pixels["train"]), (valid, pixels["eval"])):
        for i, fpath in enumerate(ann.fpaths):
            assert not Path(fpath).is_absolute() and fpath.endswith(".png")
            got = np.asarray(Image.open(out / fpath))
            np.testing.assert_array_equal(got, images[i].transpose(1, 2, 0))


def test_tfrecords_cli_and_bad_crc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "cifar-100-data-im-0.02"
    write_cui(src, {"train": [0, 1, 1], "eval": [0, 1]})
    assert main(["data", "tfrecords", str(src), "--out", str(tmp_path / "o"), "--num-classes", "100"]) == 0
    assert "3 images, 2 of 100 classes present" in capsys.readouterr().out
    blob = bytearray((src / "eval.tfrecords").read_bytes())
    blob[-1] ^= 0xFF  # the last record's data CRC
    (src / "eval.tfrecords").write_bytes(bytes(blob))
    assert main(["data", "tfrecords", str(src), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "eval.tfrecords: record 1: data CRC mismatch" in err
    assert not (tmp_path / "o2" / "cifar-100-data-im-0.02_train.json").exists()  # nothing half-finished


def test_tfrecords_wrong_features(tmp_path: Path) -> None:
    src = tmp_path / "x"
    src.mkdir()
    write_records(src / "train.tfrecords", [encode_example({"image": [b"\x00" * 3072], "label": [0]}),
                                            encode_example({"image": [b"\x00" * 100], "label": [0]})])
    write_records(src / "eval.tfrecords", [encode_example({"img": [b"\x00"], "label": [0]})])
    with pytest.raises(DataError, match=r"train.tfrecords: record 1: 'image' has 100 bytes"):
        convert_tfrecords(src, tmp_path / "o")


# ----------------------------------------------------------------------------------- split lists


def test_lists_with_sizes(tmp_path: Path) -> None:
    root = tmp_path / "imagenet"
    rows = write_folder(root / "train", [3, 2], size=(20, 30), fmt="jpg")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "LT_train.txt").write_text("".join(f"train/{p} {y}\n" for p, y in rows) + "\n")
    (lists / "LT_val.txt").write_text(f"train/{rows[0][0]} 0\n")
    written = convert_lists([lists / "LT_train.txt", lists / "LT_val.txt"], root, tmp_path / "json",
                            num_classes=4)
    train = read_annotations(tmp_path / "json" / "LT_train.json")
    assert train.num_classes == 4 and train.class_counts.tolist() == [3, 2, 0, 0]
    assert train.image_ids == [0, 1, 2, 3, 4]
    assert train.heights.tolist() == [20] * 5 and train.widths.tolist() == [30] * 5
    assert train.fpaths[0] == str((root / "train" / rows[0][0]).resolve())
    assert written[1].entries == 1

    (lists / "LT_test.txt").write_text("val/missing.JPEG 1\n")
    with pytest.raises(DataError, match=r"1 of 1 image files do not exist"):
        convert_lists([lists / "LT_test.txt"], root, tmp_path / "json")
    assert main(["data", "imagenet-lt", str(lists / "LT_test.txt"), "--image-root", str(root), "--out",
                 str(tmp_path / "json"), "--no-sizes", "--relative", "--num-classes", "2"]) == 0
    test = read_annotations(tmp_path / "json" / "LT_test.json")
    assert test.fpaths == ["val/missing.JPEG"] and not test.sizes_known


def test_list_format_errors(tmp_path: Path) -> None:
    path = tmp_path / "l.txt"
    path.write_text("a/b.jpg 1\nno_label_here\n")
    with pytest.raises(DataError, match=r"l.txt: line 2: expected 'relative/path label'"):
        read_list(path)
    path.write_text("a b/c d.jpg 3\n")
    assert read_list(path)[0] == ["a b/c d.jpg"]  # spaces in paths: the label is the last field


def official_style_lists(folder: Path, classes: int, per_class: int, seed: int = 0) -> dict[str, Path]:
    """Split lists written as the official ones are (one 'relative/path label' line per image): ImageNet-LT's
    val list (train/<wnid>/<wnid>_<n>.JPEG, by class) and test list (val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG),
    and iNaturalist18's val list (train_val2018/<supercategory>/<id>/<32 hex>.jpg, classes interleaved)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    wnids = [f"n{1440764 + 13 * c:08d}" for c in range(classes)]
    val = [f"train/{w}/{w}_{int(rng.integers(1, 20000))}_{i}.JPEG {c}\n"
           for c, w in enumerate(wnids) for i in range(per_class)]
    numbers = rng.permutation(50000)[:classes * per_class] + 1
    test = [f"val/{w}/ILSVRC2012_val_{int(numbers[c * per_class + i]):08d}.JPEG {c}\n"
            for c, w in enumerate(wnids) for i in range(per_class)]
    supers = ["Plantae", "Insecta", "Aves", "Reptilia", "Fungi"]
    inat = [f"train_val2018/{supers[c % 5]}/{c}/{rng.bytes(16).hex()}.jpg {c}\n"
            for c in range(classes) for _ in range(per_class)]
    inat = [inat[i] for i in rng.permutation(len(inat))]
    files = {"ImageNet_LT_val.txt": val, "ImageNet_LT_test.txt": test, "iNaturalist18_val.txt": inat}
    for name, lines in files.items():
        (folder / name).write_text("".join(lines))
    return {name: folder / name for name in files}


@pytest.mark.parametrize(("name", "prefix"), [("ImageNet_LT_val.txt", "train/"), ("ImageNet_LT_test.txt", "val/"),
                                              ("iNaturalist18_val.txt", "train_val2018/")])
def test_lists_in_the_official_formats(tmp_path: Path, name: str, prefix: str) -> None:
    path = official_style_lists(tmp_path / "lists", classes=40, per_class=3)[name]
    check_converted_list(path, tmp_path, lines=120, classes=40, per_class=3, prefix=prefix)


def check_converted_list(path: Path, tmp_path: Path, *, lines: int, classes: int, per_class: int, prefix: str) -> None:
    written = convert_lists([path], tmp_path / "root", tmp_path, sizes=False, relative=True)
    assert written[0].entries == lines
    ann = read_annotations(written[0].path)
    assert ann.num_classes == classes
    assert ann.class_counts.tolist() == [per_class] * classes
    assert len(set(ann.fpaths)) == lines
    assert all(p.startswith(prefix) for p in ann.fpaths)
    rows = [line.rsplit(" ", 1) for line in path.read_text().splitlines()]
    assert [(f, int(y)) for f, y in rows] == list(zip(ann.fpaths, ann.labels.tolist()))  # line by line


OFFICIAL_LISTS = os.environ.get("FCC_OFFICIAL_SPLIT_LISTS", "")


@pytest.mark.skipif(not OFFICIAL_LISTS, reason="optional check on the real lists: set FCC_OFFICIAL_SPLIT_LISTS to "
                    "a folder holding ImageNet_LT_val.txt / ImageNet_LT_test.txt (the ImageNet-LT download of Liu "
                    "et al., OLTR, 2019) and iNaturalist18_val.txt (the lists of Kang et al.'s decoupling code, 2020)")
@pytest.mark.parametrize(("name", "lines", "classes", "per_class", "prefix"), [
    ("ImageNet_LT_val.txt", 20000, 1000, 20, "train/"),
    ("ImageNet_LT_test.txt", 50000, 1000, 50, "val/"),
    ("iNaturalist18_val.txt", 24426, 8142, 3, "train_val2018/"),
])
def test_official_split_lists_when_given(tmp_path: Path, name: str, lines: int, classes: int, per_class: int,
                                         prefix: str) -> None:
    path = Path(OFFICIAL_LISTS) / name
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    check_converted_list(path, tmp_path, lines=lines, classes=classes, per_class=per_class, prefix=prefix)


# ----------------------------------------------------------------------------------------- iNat18


def inat_file(path: Path, images: list[tuple[int, str, int]], categories: list[int],
              extra_annotations: list[dict] | None = None) -> Path:
    """A COCO-like iNat18 file; annotations deliberately in a different order from the images."""
    data = {
        "images": [{"id": i, "file_name": f, "width": 40 + i, "height": 30} for i, f, _ in images],
        "annotations": [{"id": 100 + k, "image_id": i, "category_id": c}
                        for k, (i, _, c) in enumerate(reversed(images))] + (extra_annotations or []),
        "categories": [{"id": c, "name": f"species_{c}", "supercategory": "Plantae"} for c in categories],
    }
    path.write_text(json.dumps(data))
    return path


def test_inat18(tmp_path: Path) -> None:
    images = [(7, "train_val2018/Plantae/1/a.jpg", 1), (3, "train_val2018/Aves/0/b.jpg", 0),
              (9, "train_val2018/Plantae/1/c.jpg", 1), (4, "train_val2018/Insecta/2/d.jpg", 2)]
    src = inat_file(tmp_path / "val2018.json", images, [2, 0, 1])
    assert main(["data", "inat18", str(src), "--image-root", "/data/inat", "--out", str(tmp_path)]) == 0
    ann = read_annotations(tmp_path / "iNat18_val2018.json")  # --out a folder: named after the input
    assert ann.image_ids == [7, 3, 9, 4]
    assert ann.labels.tolist() == [1, 0, 1, 2]  # matched by image_id, not by list order
    assert ann.widths.tolist() == [47, 43, 49, 44] and ann.heights.tolist() == [30] * 4
    assert ann.fpaths[0] == "/data/inat/train_val2018/Plantae/1/a.jpg"
    assert ann.class_names == ["species_0", "species_1", "species_2"]


def test_inat18_errors(tmp_path: Path) -> None:
    images = [(1, "a.jpg", 0), (2, "b.jpg", 1)]
    src = inat_file(tmp_path / "x.json", images, [0, 1], extra_annotations=[{"image_id": 1, "category_id": 1}])
    with pytest.raises(DataError, match=r"image 1 has a second annotation"):
        convert_inat(src, tmp_path, tmp_path / "o.json")
    src = inat_file(tmp_path / "x.json", images, [0, 1], extra_annotations=[{"image_id": 99, "category_id": 1}])
    with pytest.raises(DataError, match=r"1 annotations refer to images not in 'images'"):
        convert_inat(src, tmp_path, tmp_path / "o.json")
    src = inat_file(tmp_path / "x.json", [(1, "a.jpg", 10), (2, "b.jpg", 30)], [10, 30])
    with pytest.raises(DataError, match=r"category ids are not 0..1; pass --remap-categories"):
        convert_inat(src, tmp_path, tmp_path / "o.json")
    ann = read_annotations(convert_inat(src, tmp_path, tmp_path / "o.json", remap_categories=True).path)
    assert ann.labels.tolist() == [0, 1] and ann.class_names == ["species_10", "species_30"]
    with pytest.raises(ConfigError, match="overwrite the input"):
        convert_inat(src, tmp_path, src, remap_categories=True)
    src.write_text(json.dumps({"images": [{"id": 1, "file_name": "a"}], "annotations": [], "categories": []}))
    with pytest.raises(DataError, match="has no annotations"):
        convert_inat(src, tmp_path, tmp_path / "o.json")


# ------------------------------------------------------------------------------------ from-folder


def test_from_folder(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write_folder(root, [2, 3, 1], size=(10, 12), names=["zebra", "ant", "moth"])
    (root / "ant" / "sub").mkdir()
    Image.new("RGB", (5, 6)).save(root / "ant" / "sub" / "x.JPG")
    (root / "ant" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    w = convert_folder(root, tmp_path / "all.json")
    ann = read_annotations(w.path)
    assert ann.class_names == ["ant", "moth", "zebra"]  # sorted by name
    assert ann.class_counts.tolist() == [4, 1, 2]
    assert sorted(zip(ann.heights.tolist(), ann.widths.tolist())) == [(6, 5)] + [(10, 12)] * 6
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in ann.fpaths)

    test_root = tmp_path / "test"
    write_folder(test_root, [1, 1], names=["moth", "zebra"])
    w = convert_folder(test_root, tmp_path / "test.json", class_names=ann.class_names, relative=True, sizes=False)
    test = read_annotations(w.path)
    assert test.num_classes == 3 and test.labels.tolist() == [1, 2]  # the training split's class ids
    assert test.fpaths == ["moth/0000.png", "zebra/0000.png"]


def test_from_folder_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_folder(tmp_path / "t", [2, 1])
    assert main(["data", "from-folder", str(tmp_path / "t"), "--out", str(tmp_path / "t.json")]) == 0
    assert "3 images, 2 of 2 classes present, 1..2 per class" in capsys.readouterr().out
    assert main(["data", "from-folder", str(tmp_path / "nope"), "--out", str(tmp_path / "x.json")]) == 2


def test_from_folder_on_the_folder_above_the_splits_says_so(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """ROOT/train/<class>/... and ROOT/test/<class>/... given as ROOT: not a 2-class dataset 'test', 'train'."""
    write_folder(tmp_path / "photos" / "train", [2, 1], names=["cat", "dog"])
    write_folder(tmp_path / "photos" / "test", [1, 1], names=["cat", "dog"])
    out = tmp_path / "all.json"
    assert main(["data", "from-folder", str(tmp_path / "photos"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "its folders (test, train) look like splits, not classes" in err and "test/cat/0000.png" in err
    assert f"fcc data from-folder {tmp_path / 'photos' / 'test'} --out test.json" in err and not out.exists()
    # split-named folders with the images directly inside: possible, so a warning only
    write_folder(tmp_path / "flat", [1, 1], names=["train", "val"])
    with pytest.warns(UserWarning, match="every class folder has a split's name"):
        convert_folder(tmp_path / "flat", tmp_path / "flat.json")


# ---------------------------------------------------------------------------------- replace-path


def test_replace_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entries = [("/mnt/data3/imagenet/train/a.jpg", 0), ("/mnt/data3/imagenet_extra/b.jpg", 0),
               ("/mnt/data3/imagenet/val/c.jpg", 1), ("rel/d.jpg", 1)]
    path = write_json(tmp_path / "a.json", entries, 2, class_names=["x", "y"], note="kept")
    raw = json.loads(path.read_text())
    raw["annotations"][0]["im_shape"] = [3, 4]
    path.write_text(json.dumps(raw))
    assert replace_path(path, "/mnt/data3/imagenet/", "/fast/in1k") == (2, 4)
    out = json.loads(path.read_text())
    assert [a["fpath"] for a in out["annotations"]] == [
        "/fast/in1k/train/a.jpg", "/mnt/data3/imagenet_extra/b.jpg", "/fast/in1k/val/c.jpg", "rel/d.jpg"]
    assert out["note"] == "kept" and out["class_names"] == ["x", "y"] and out["annotations"][0]["im_shape"] == [3, 4]
    assert main(["data", "replace-path", str(path), "-f", "/fast/in1k", "-r", "", "--out",
                 str(tmp_path / "b.json")]) == 0
    assert "rewrote 2 of 4 fpaths" in capsys.readouterr().out
    assert read_annotations(tmp_path / "b.json").fpaths[0] == "train/a.jpg"
    with pytest.raises(ConfigError):
        replace_path(path, "", "/x")


def test_replace_path_that_matches_nothing_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "a.json", [("/data/in1k/a.jpg", 0), ("/data/in1k/b.jpg", 1)], 2)
    before = path.read_bytes()
    # a near miss (the prefix without its leading slash): before, "rewrote 0 of 2 fpaths" and exit 0
    assert main(["data", "replace-path", str(path), "-f", "data/in1k", "-r", "/fast"]) == 2
    err = capsys.readouterr().err
    assert "no fpath starts with 'data/in1k'" in err and "'/data/in1k/a.jpg'" in err
    assert path.read_bytes() == before


# --------------------------------------------------------------------------------------- make-lt


def test_make_lt_index_order(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(5), 40)
    np.random.default_rng(0).shuffle(labels)
    path = write_json(tmp_path / "bal.json", [(f"{i}.png", int(y)) for i, y in enumerate(labels)], 5)
    w, short = make_long_tailed(path, tmp_path / "lt.json", 10.0, seed=3)
    ann = read_annotations(w.path)
    assert ann.class_counts.tolist() == long_tail_counts(5, 10.0, 40) == [40, 22, 12, 7, 4]
    assert short == 0
    kept = [int(p.split(".")[0]) for p in ann.fpaths]
    assert kept == sorted(kept)  # file order is kept
    again, _ = make_long_tailed(path, tmp_path / "lt2.json", 10.0, seed=3)
    assert read_annotations(again.path).fpaths == ann.fpaths
    other, _ = make_long_tailed(path, tmp_path / "lt3.json", 10.0, seed=4)
    assert read_annotations(other.path).fpaths != ann.fpaths
    # independent re-derivation of the selection: per class ascending, one RandomState shuffle each
    rng = np.random.RandomState(3)
    expected = []
    for c, n in enumerate([40, 22, 12, 7, 4]):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        expected += idx[:n].tolist()
    assert kept == sorted(expected)


def test_make_lt_size_order_and_short_classes(tmp_path: Path) -> None:
    counts = [5, 30, 12, 30]
    labels = np.repeat(np.arange(4), counts)
    path = write_json(tmp_path / "a.json", [(f"{i}.png", int(y)) for i, y in enumerate(labels)], 4)
    w, short = make_long_tailed(path, tmp_path / "b.json", 4.0, order="size")
    # ranks by size (ties by id): class 1, 3, 2, 0 get floor(30 * 4^(-k/3)) = 30, 18, 11, 7
    assert read_annotations(w.path).class_counts.tolist() == [5, 30, 11, 18]
    assert short == 1  # class 0 has 5 < 7 images and keeps them all
    w, _ = make_long_tailed(path, tmp_path / "c.json", 4.0, max_per_class=6)
    assert read_annotations(w.path).class_counts.tolist() == [5, 3, 2, 1]  # floor(6 * 4^(-k/3)): 6, 3, 2, 1
    with pytest.raises(ConfigError, match="--imbalance"):
        make_long_tailed(path, tmp_path / "d.json", 0.5)
    assert main(["data", "make-lt", str(path), "--out", str(tmp_path / "e.json"), "--imbalance", "2"]) == 0


def test_make_lt_never_leaves_a_class_without_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = np.repeat(np.arange(4), 10)
    path = write_json(tmp_path / "a.json", [(f"{i}.png", int(y)) for i, y in enumerate(labels)], 4,
                      class_names=["a", "b", "c", "d"])
    out = tmp_path / "lt.json"
    # floor(10 * 20^(-3/3)) = 0 for the last class: before, exit 0 with class 3 empty
    assert main(["data", "make-lt", str(path), "--out", str(out), "--imbalance", "20"]) == 2
    err = capsys.readouterr().err
    assert "without images: 3 (d): --imbalance 20 with 10 images in the largest class" in err
    assert "can be at most 10" in err and not out.exists()
    gap = write_json(tmp_path / "gap.json", [(f"{i}.png", int(y)) for i, y in enumerate(labels) if y != 1], 4)
    with pytest.raises(DataError, match=r"without images: 1: .*gap.json has no images of them"):
        make_long_tailed(gap, out, 2.0)
