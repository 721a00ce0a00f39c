"""CAM-based sampling: counts, maps, masks, bounding boxes, transforms, generation and a stage-2 run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_run_overrides
from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.data.annotations import read_annotations
from fcc_lt.data.build import build_splits
from fcc_lt.engine.trainer import Trainer
from fcc_lt.methods.cam import (
    bounding_boxes,
    class_activation_maps,
    draw_sources,
    foreground_masks,
    inverse_affines,
    minmax_scale,
    new_image_counts,
    paste_transformed,
)
from fcc_lt.models.network import build_network
from fcc_lt.util.errors import DataError, OutputError

STAGE1 = "cifar10_lt/cam_stage1_if100"
STAGE2 = "cifar10_lt/cam_if100"




def test_new_image_counts_by_hand() -> None:
    counts = [60, 46, 35, 27, 21, 16, 12, 10, 7, 6]
    # n_max + n_min - n_c = 66 - n_c: every class ends with 66 images
    assert new_image_counts(counts) == [6, 20, 31, 39, 45, 50, 54, 56, 59, 60]
    # capped at 30: none for classes of >= 30 images, at most 30 for the others
    assert new_image_counts(counts, cap=30) == [0, 0, 0, 30, 30, 30, 30, 30, 30, 30]
    assert new_image_counts(counts, cap=50) == [0, 20, 31, 39, 45, 50, 50, 50, 50, 50]
    assert new_image_counts([5, 5]) == [5, 5]


def test_draw_sources_takes_each_class_from_its_own_images() -> None:
    labels = torch.tensor([2, 0, 1, 0, 2, 2, 1, 0, 0])
    gen = torch.Generator().manual_seed(0)
    index, classes = draw_sources(labels, [3, 0, 5], gen)
    assert classes.tolist() == [0, 0, 0, 2, 2, 2, 2, 2]
    assert torch.equal(labels[index], classes)
    again, _ = draw_sources(labels, [3, 0, 5], torch.Generator().manual_seed(0))
    assert torch.equal(index, again)
    big, _ = draw_sources(labels, [0, 4000, 0], torch.Generator().manual_seed(1))
    # uniform over the two images of class 1 (indices 2 and 6)
    share = float((big == 2).double().mean())
    assert set(big.tolist()) == {2, 6} and abs(share - 0.5) < 0.03
    with pytest.raises(DataError, match="no training image"):
        draw_sources(torch.tensor([0, 0]), [1, 1], gen)


def test_class_activation_maps_by_hand() -> None:
    torch.manual_seed(0)
    cfg = load_config(STAGE1, ["model.backbone=resnet_cifar", "model.backbone_params={depth: 8, width: 4}"])
    net = build_network(cfg, 10).eval()
    x = torch.randn(3, 3, 32, 32)
    y = torch.tensor([4, 0, 9])
    with torch.no_grad():
        cams = class_activation_maps(net, x, y).double()
        maps = net.backbone(x).double()
    w = net.head.fc.weight.detach().double()
    for b in range(3):
        expected = sum(w[y[b], d] * maps[b, d] for d in range(maps.shape[1]))
        assert torch.allclose(cams[b], expected, atol=1e-5)
    # the map's spatial mean plus the bias is the image's logit (GAP is linear)
    logits = net(x).double()
    assert torch.allclose(cams.mean(dim=(1, 2)) + net.head.fc.bias.double()[y], logits[torch.arange(3), y],
                          atol=1e-4)


def test_minmax_and_foreground_by_hand() -> None:
    cam = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[5.0, 5.0], [5.0, 5.0]]])
    scaled = minmax_scale(cam)
    assert torch.allclose(scaled[0], torch.tensor([[0, 1 / 3], [2 / 3, 1]]))
    assert torch.equal(scaled[1], torch.zeros(2, 2))  # a constant map: all foreground, no NaN
    # same size (no resize): mean of [0, 1/3, 2/3, 1] is 1/2, threshold 3/8
    masks = foreground_masks(cam, (2, 2))
    assert masks[0].tolist() == [[False, False], [True, True]]
    assert bool(masks[1].all())
    # resized: bilinear upsampling of the scaled map, then the threshold against its own mean
    big = foreground_masks(cam[:1], (4, 4))
    up = torch.nn.functional.interpolate(scaled[:1, None], size=(4, 4), mode="bilinear", align_corners=False)[0, 0]
    assert torch.equal(big[0], up >= 0.75 * up.mean())


def test_bounding_box_uses_the_last_row_and_column() -> None:
    mask = torch.zeros(2, 8, 10, dtype=torch.bool)
    mask[0, 1, 2] = mask[0, 3, 7] = mask[0, 6, 4] = True  # three separate pixels
    # the original's bug (first and SECOND nonzero) would give rows 1..3 and columns 2..4
    assert bounding_boxes(mask).tolist()[0] == [1, 6, 2, 7]
    assert bounding_boxes(mask).tolist()[1] == [0, 7, 0, 9]  # empty mask: the whole image
    full = torch.ones(1, 8, 10, dtype=torch.bool)
    assert bounding_boxes(full).tolist() == [[0, 7, 0, 9]]


def _params(choice: int, theta: float = 0.0, scale: float = 1.0, ux: float = 0.0, uy: float = 0.0) -> torch.Tensor:
    return torch.tensor([[(choice + 0.5) / 3, (theta / (math.pi / 4) + 1) / 2, (scale - 0.8) / 0.4, ux, uy]],
                        dtype=torch.float64)


def _scene() -> tuple[torch.Tensor, torch.Tensor]:
    """A textured background and an L-shaped foreground of value 250 (rows 4..9, columns 5..8)."""
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 100, (1, 3, 32, 32), generator=g, dtype=torch.uint8)
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, 4:10, 5:7] = True
    mask[0, 8:10, 5:9] = True
    image[:, :, mask[0]] = 250
    return image, mask


def test_translation_moves_the_foreground_by_whole_pixels() -> None:
    image, mask = _scene()
    box = bounding_boxes(mask)
    assert box.tolist() == [[4, 9, 5, 8]]
    # dx = floor(u * (W - (right - left))) - left = floor(10.5) - 5 = 5; dy = floor(0.25 * 27) - 4 = 2
    out = paste_transformed(image, mask, inverse_affines(box, _params(1, ux=10.5 / 29, uy=0.25), (32, 32)))
    moved = torch.zeros_like(mask)
    moved[0, 6:12, 10:12] = True
    moved[0, 10:12, 10:14] = True
    assert bool((out[:, :, moved[0]] == 250).all())
    assert torch.equal(out[:, :, ~moved[0]], image[:, :, ~moved[0]])  # everything else: the original image
    # the shift range reaches the image borders at both ends and never crosses them
    low = inverse_affines(box, _params(1, ux=0.0, uy=0.0), (32, 32))
    high = inverse_affines(box, _params(1, ux=0.999999, uy=0.999999), (32, 32))
    assert (5 - low[0, 0, 2], 4 - low[0, 1, 2]) == (0, 0)  # left and top edges at 0
    assert (8 - high[0, 0, 2], 9 - high[0, 1, 2]) == (31, 31)  # right and bottom edges at 31


def test_flip_mirrors_the_foreground_in_its_box() -> None:
    image, mask = _scene()
    out = paste_transformed(image, mask, inverse_affines(bounding_boxes(mask), _params(2), (32, 32)))
    mirrored = torch.zeros_like(mask)
    mirrored[0, 4:10, 7:9] = True  # columns 5..8 mirrored: x -> 13 - x
    mirrored[0, 8:10, 5:9] = True
    assert bool((out[:, :, mirrored[0]] == 250).all())
    assert torch.equal(out[:, :, ~mirrored[0]], image[:, :, ~mirrored[0]])


def test_rotation_about_the_box_centre() -> None:
    image, mask = _scene()
    box = bounding_boxes(mask)
    same = paste_transformed(image, mask, inverse_affines(box, _params(0, theta=0.0, scale=1.0), (32, 32)))
    assert torch.equal(same, image)  # angle 0, scale 1: the identity
    bar_image = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    bar = torch.zeros(1, 32, 32, dtype=torch.bool)
    bar[0, 15:18, 6:27] = True  # a horizontal bar, 3 x 21, centred on (16, 16)
    bar_image[:, :, bar[0]] = 255
    theta, scale = math.pi / 4, 1.2
    out = paste_transformed(bar_image, bar, inverse_affines(bounding_boxes(bar), _params(0, theta, scale), (32, 32)))
    new = (out[0, 0] == 255) & ~bar[0]
    ys, xs = torch.nonzero(out[0, 0] > 127, as_tuple=True)
    assert new.any()
    # centroid stays at the box centre; area grows by scale^2; principal axis at 45 degrees (y down)
    assert abs(float(ys.double().mean()) - 16) < 0.6 and abs(float(xs.double().mean()) - 16) < 0.6
    pasted = torch.zeros(32, 32, dtype=torch.bool)
    pasted[ys, xs] = True
    rotated_only = pasted & ~bar[0]
    assert rotated_only.sum() > 20
    dy, dx = ys.double() - ys.double().mean(), xs.double() - xs.double().mean()
    angle = 0.5 * math.atan2(2 * float((dx * dy).mean()), float((dx * dx).mean() - (dy * dy).mean()))
    # the union of the original bar and the rotated one: the angle lies between 0 and 45 degrees; the
    # rotated copy alone must be close to 45 degrees
    ry, rx = torch.nonzero(rotated_only, as_tuple=True)
    ry, rx = ry.double() - ry.double().mean(), rx.double() - rx.double().mean()
    r_angle = 0.5 * math.atan2(2 * float((rx * ry).mean()), float((rx * rx).mean() - (ry * ry).mean()))
    assert 0 < angle < math.pi / 4
    assert abs(r_angle - math.pi / 4) < math.radians(8)


@pytest.fixture(scope="module")
def stage1(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cam") / "stage1"
    cfg = load_config(STAGE1, tiny_run_overrides(cifar10_root, out, "train.epochs=1", "train.milestones=[]"))
    Trainer(cfg).fit()
    return out


def test_generate_and_train_stage2(stage1: Path, cifar10_root: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    cam = tmp_path / "cam"
    assert main(["data", "cam-generate", str(stage1), "--out", str(cam), "--batch-size", "64"]) == 0
    assert "extra_train_json" in capsys.readouterr().out
    ann = read_annotations(cam / "cam_train.json")
    raw = json.loads((cam / "cam_train.json").read_text())
    counts = raw["cam_generation"]["train_counts"]
    assert counts == [60, 46, 35, 27, 21, 16, 12, 10, 7, 6]  # the fixture's IF-10 subset
    assert ann.class_counts.tolist() == [66 - n for n in counts]
    assert ann.class_names is not None and ann.class_names[0] == "airplane"
    # every image is a lossless 32x32 PNG whose pixels outside the changed area are the source image's
    splits = build_splits(load_config(stage1 / "config.yaml"))
    changed_any = 0
    for entry in raw["annotations"][::23]:
        with Image.open(cam / entry["fpath"]) as img:
            assert img.format == "PNG" and img.size == (32, 32)
            pixels = np.asarray(img.convert("RGB"))
        source = splits.train.images[entry["source_index"]].permute(1, 2, 0).numpy()
        assert int(splits.train.labels[entry["source_index"]]) == entry["category_id"]
        diff = (pixels != source).any(axis=2)
        changed_any += int(diff.any())
        assert diff.mean() < 0.95
    assert changed_any > 0
    # same seed, same images (whatever the batch size); a non-empty folder is refused
    from fcc_lt.evaluation.run_loader import load_run_config
    from fcc_lt.methods.cam import generate

    with pytest.raises(OutputError, match="not empty"):
        generate(stage1, cam, cfg=load_run_config(stage1))
    again = generate(stage1, tmp_path / "again", cfg=load_run_config(stage1), batch_size=100)
    assert json.loads(Path(again["json"]).read_text())["annotations"] == raw["annotations"]
    for entry in raw["annotations"][::37]:
        assert (cam / entry["fpath"]).read_bytes() == (tmp_path / "again" / entry["fpath"]).read_bytes()

    # stage 2 (the shipped config) trains on the long-tailed set plus the generated images
    out = tmp_path / "stage2"
    cfg = load_config(STAGE2, tiny_run_overrides(
        cifar10_root, out, f"model.init_from={stage1}/checkpoints/last.pt",
        f"data.extra_train_json={cam / 'cam_train.json'}", "train.epochs=1", "train.milestones=[]"))
    trainer = Trainer(cfg)
    assert trainer.stats.sampled_counts == (66,) * 10  # what the sampler draws from
    assert trainer.stats.train_counts == tuple(counts)  # the protocol's counts: a tail class stays a tail class
    assert len(trainer.splits.train) == 660
    trainer.fit()
    result = json.loads((out / "eval.json").read_text())
    assert result["train_counts"] == counts  # shot groups from the protocol, not from 66 per class
    assert result["group_sizes"] == {"many": 0, "medium": 5, "few": 5}
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["class_stats"]
    assert saved == {"train_counts": counts, "sampled_counts": [66] * 10}


def test_extra_train_json_errors(cifar10_root: Path, cifar100_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "extra"
    (folder / "img").mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(folder / "img" / "a.png")
    (folder / "x.json").write_text(json.dumps({"num_classes": 10, "annotations": [
        {"image_id": 0, "fpath": "img/a.png", "category_id": 3}]}))
    base = [f"data.root={cifar10_root}", "data.imbalance_factor=10"]
    with pytest.raises(DataError, match="not 32x32"):
        build_splits(load_config(STAGE1, [*base, f"data.extra_train_json={folder / 'x.json'}"]))
    (folder / "y.json").write_text(json.dumps({"num_classes": 100, "annotations": [
        {"image_id": 0, "fpath": "img/a.png", "category_id": 3}]}))
    with pytest.raises(DataError, match="num_classes is 100"):
        build_splits(load_config(STAGE1, [*base, f"data.extra_train_json={folder / 'y.json'}"]))
    (folder / "z.json").write_text(json.dumps({"num_classes": 10, "annotations": [
        {"image_id": 0, "fpath": "img/missing.png", "category_id": 3}]}))
    with pytest.raises(DataError, match="do not exist"):
        build_splits(load_config(STAGE1, [*base, f"data.extra_train_json={folder / 'z.json'}"]))


@pytest.mark.parametrize("loader", ["workers", "device"])
def test_image_file_dataset(loader: str, tmp_path: Path) -> None:
    """CAM images of a JSON image dataset: generated at data.image_size, added as files (worker loader)
    or decoded into memory (device loader), and trained on."""
    from image_fixtures import write_json_dataset

    train_json, test_json = write_json_dataset(tmp_path / "data", [8, 4, 2], size=(40, 36))
    data = ["data.dataset=json", f"data.train_json={train_json}", f"data.test_json={test_json}",
            "data.image_size=32", f"data.loader={loader}", "data.workers=0", "train.batch_size=4"]
    stage1 = tmp_path / "stage1"
    Trainer(load_config(STAGE1, tiny_run_overrides(tmp_path, stage1, *data))).save("last")
    from fcc_lt.evaluation.run_loader import load_run_config
    from fcc_lt.methods.cam import generate

    done = generate(stage1, tmp_path / "cam", cfg=load_run_config(stage1), cap=5)
    assert done["new_counts"] == [0, 5, 5]  # capped: none for the class of >= 5 images
    ann = read_annotations(done["json"])
    assert ann.class_counts.tolist() == [0, 5, 5] and set(ann.heights.tolist()) == {32}
    cfg = load_config(STAGE2, tiny_run_overrides(tmp_path, tmp_path / "stage2", *data,
                                                 f"model.init_from={stage1}/checkpoints/last.pt",
                                                 f"data.extra_train_json={done['json']}", "train.epochs=1",
                                                 "train.milestones=[]"))
    trainer = Trainer(cfg)
    assert trainer.stats.sampled_counts == (8, 9, 7)
    assert type(trainer.splits.train).__name__ == ("ImageFiles" if loader == "workers" else "ArrayDataset")
    trainer.fit()
    assert (tmp_path / "stage2" / "eval.json").exists()
