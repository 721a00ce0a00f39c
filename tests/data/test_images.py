"""Image pipeline: crop boxes and colour jitter against independent re-derivations, PIL transforms,
the worker loader's determinism (worker counts, start_step, ranks), bad images, datasets, a tiny run."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.config.schema import Config
from fcc_lt.data.augment import ColorJitter, Compose, Normalize, PadCropFlip, random_resized_boxes
from fcc_lt.data.build import build_eval_loader, build_splits, build_train_loader, device_augment
from fcc_lt.data.datasets import ArrayDataset
from fcc_lt.data.image_loader import WorkerEvalLoader, WorkerLoader, decode_all
from fcc_lt.data.images import CenterResizeCrop, DataWarning, ImageFiles, RandomResizedCropFlip
from fcc_lt.methods.samplers import InstanceSampler
from fcc_lt.util.distributed import DistContext
from fcc_lt.util.errors import ConfigError, DataError
from image_fixtures import write_folder, write_json, write_json_dataset

# ------------------------------------------------------------------------------ random-resized crop


def rrc_reference(h: int, w: int, u: np.ndarray, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, ...]:
    """torchvision's RandomResizedCrop.get_params, scalar Python, fed with the same uniforms (10, 4)."""
    area = h * w
    for a in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * u[a, 0])
        aspect = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[a, 1])
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return int(u[a, 2] * (h - ch + 1)), int(u[a, 3] * (w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, round(w / min(ratio))
    elif in_ratio > max(ratio):
        ch, cw = h, round(h * max(ratio))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


@pytest.mark.parametrize(("h", "w"), [(60, 80), (300, 200), (10, 1000), (1000, 7), (5, 5)])
def test_rrc_boxes_match_scalar_reference(h: int, w: int) -> None:
    n = 400
    boxes = random_resized_boxes(torch.full((n,), h), torch.full((n,), w), torch.Generator().manual_seed(1))
    u = torch.rand((n, 10, 4), generator=torch.Generator().manual_seed(1), dtype=torch.float64).numpy()
    expected = [rrc_reference(h, w, u[i]) for i in range(n)]
    assert [tuple(b) for b in boxes.tolist()] == expected
    top, left, bh, bw = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + bh <= h).all() and (left + bw <= w).all()
    assert (bh >= 1).all() and (bw >= 1).all()


def test_rrc_statistics_within_bounds() -> None:
    n, h, w = 4000, 375, 500
    boxes = random_resized_boxes(torch.full((n,), h), torch.full((n,), w), torch.Generator().manual_seed(0))
    top, _left, bh, bw = boxes.double().T
    frac = bh * bw / (h * w)
    aspect = bw / bh
    assert frac.min() >= 0.08 * 0.97 and frac.max() <= 1.0
    assert aspect.min() >= 0.75 * 0.97 and aspect.max() <= 4 / 3 * 1.03
    assert 0.4 < frac.mean() < 0.6  # E[U(0.08, 1)] = 0.54 (large draws that do not fit are redrawn)
    # log aspect ratio is uniform on [log 3/4, log 4/3]; on a square image rejections are symmetric: mean 0
    square = random_resized_boxes(torch.full((n,), 400), torch.full((n,), 400), torch.Generator().manual_seed(1))
    log_aspect = torch.log(square[:, 3].double() / square[:, 2].double())
    assert abs(log_aspect.mean()) < 0.01 and abs(log_aspect.std() - math.log(16 / 9) / math.sqrt(12)) < 0.01
    # the placement is uniform: the relative offset averages 1/2
    rel_top = top[bh < h] / (h - bh[bh < h])
    assert abs(rel_top.mean() - 0.5) < 0.03


def test_rrc_transform_is_the_pil_crop_and_seeded(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(array).save(path)
    t = RandomResizedCropFlip(24)
    flips = []
    for seed in range(60):
        out = t(str(path), seed)
        assert out.shape == (24, 24, 3) and out.dtype == np.uint8
        (top, left, h, w), flip = t.params(70, 50, seed)
        ref = Image.fromarray(array).resize((24, 24), Image.BILINEAR, box=(left, top, left + w, top + h))
        ref = np.asarray(ref)[:, ::-1] if flip else np.asarray(ref)
        np.testing.assert_array_equal(out, ref)
        flips.append(flip)
    assert 15 <= sum(flips) <= 45  # p = 1/2 over 60 seeds
    np.testing.assert_array_equal(t(str(path), 5), t(str(path), 5))
    flip_rate = np.mean([t.params(70, 50, s)[1] for s in range(2000)])
    assert abs(flip_rate - 0.5) < 0.04


def test_jpeg_draft_keeps_the_crop_close(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:600, 0:800]
    array = np.stack([xx * 255 // 800, yy * 255 // 600, (xx + yy) * 255 // 1400], axis=2).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(array).save(path, quality=95)
    fast, exact = RandomResizedCropFlip(32, jpeg_draft=True), RandomResizedCropFlip(32, jpeg_draft=False)
    for seed in range(10):
        a, b = fast(str(path), seed).astype(int), exact(str(path), seed).astype(int)
        assert np.abs(a - b).mean() < 3
    c_fast = CenterResizeCrop(32, jpeg_draft=True)(str(path)).astype(int)
    c_exact = CenterResizeCrop(32, jpeg_draft=False)(str(path)).astype(int)
    assert np.abs(c_fast - c_exact).mean() < 3


def test_jpegs_are_decoded_whole_by_default(tmp_path: Path) -> None:
    """data.jpeg_draft is off by default: an 800x600 photo (draft would decode it at 1/2 scale) gives the
    pixels of the full decode, as the original code's."""
    from fcc_lt.config.schema import DataConfig
    from fcc_lt.data.images import eval_transform, train_transform

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:600, 0:800]
    smooth = np.stack([xx * 255 / 800, yy * 255 / 600, (xx + yy) * 255 / 1400], axis=2)
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.clip(smooth + rng.normal(0, 20, (600, 800, 3)), 0, 255).astype(np.uint8)).save(path, quality=90)
    cfg = DataConfig(image_size=224, augment="rrc_flip")
    full = CenterResizeCrop(224, 0.875, jpeg_draft=False)(str(path))
    assert not np.array_equal(CenterResizeCrop(224, 0.875, jpeg_draft=True)(str(path)), full)  # draft matters here
    np.testing.assert_array_equal(eval_transform(cfg)(str(path)), full)
    train = train_transform(cfg)
    for seed in range(5):
        np.testing.assert_array_equal(train(str(path), seed),
                                      RandomResizedCropFlip(224, jpeg_draft=False)(str(path), seed))


# ----------------------------------------------------------------------------------- centre crop


def test_center_resize_crop_exact(tmp_path: Path) -> None:
    array = np.random.default_rng(1).integers(0, 256, size=(60, 40, 3), dtype=np.uint8)  # H 60, W 40
    path = tmp_path / "a.png"
    Image.fromarray(array).save(path)
    t = CenterResizeCrop(16, crop_ratio=0.5)  # shorter side to int(16 / 0.5) = 32: 32 x 48
    assert t.target(40, 60) == (32, 48)
    expected = Image.fromarray(array).resize((32, 48), Image.BILINEAR).crop((8, 16, 24, 32))
    np.testing.assert_array_equal(t(str(path)), np.asarray(expected))
    assert CenterResizeCrop(224).resize_to == 256
    assert CenterResizeCrop(224).target(500, 375) == (341, 256)  # int(256 * 500 / 375)
    # an image already size x size with crop ratio 1 comes back unchanged; grey images become RGB
    square = array[:16, :16]
    Image.fromarray(square).save(tmp_path / "s.png")
    np.testing.assert_array_equal(CenterResizeCrop(16, 1.0)(str(tmp_path / "s.png")), square)
    Image.fromarray(square[:, :, 0]).save(tmp_path / "g.png")
    grey = CenterResizeCrop(16, 1.0)(str(tmp_path / "g.png"))
    assert grey.shape == (16, 16, 3) and (grey == square[:, :, :1]).all()


# ----------------------------------------------------------------------------------- colour jitter


def jitter_reference(image: np.ndarray, factors: np.ndarray, order: np.ndarray) -> np.ndarray:
    """float64, one image at a time: blend with black / mean grey / grey in the given order, clamp."""
    x = image.astype(np.float64)
    for op in order:
        f = factors[op]
        grey = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
        degenerate = [np.zeros_like(grey), np.full_like(grey, grey.mean()), grey][op]
        x = np.clip(f * x + (1 - f) * degenerate[None], 0, 255)
    return x


def test_color_jitter_against_reference() -> None:
    jitter = ColorJitter(0.4, 0.4, 0.4)
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    params = jitter.draw(64, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert params.factors.min() >= 0.6 and params.factors.max() <= 1.4
    assert (params.order.sort(dim=1).values == torch.arange(3)).all()  # a permutation per image
    out = jitter(images, params)
    for i in range(64):
        ref = jitter_reference(images[i].numpy(), params.factors[i].double().numpy(), params.order[i].numpy())
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-3)
    orders = {tuple(o) for o in params.order.tolist()}
    assert len(orders) == 6  # all orders occur
    still = ColorJitter(0, 0, 0)
    assert torch.equal(still(images, still.draw(64, torch.Generator(), torch.device("cpu"))), images.float())


def test_compose_slices_params_per_rank() -> None:
    aug = Compose([PadCropFlip(pad=2), ColorJitter(0.3, 0.3, 0.3)])
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    params = aug.draw(6, torch.Generator().manual_seed(0), torch.device("cpu"))
    whole = aug(images, params)
    half = aug(images[1::2], params[1::2])
    torch.testing.assert_close(whole[1::2], half)


# ---------------------------------------------------------------------------------------- loaders


@pytest.fixture(scope="module")
def varied_images(tmp_path_factory: pytest.TempPathFactory) -> ImageFiles:
    """22 PNG/JPEG images of assorted sizes and modes in 3 classes."""
    root = tmp_path_factory.mktemp("varied")
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(22):
        h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))
        array = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        img = Image.fromarray(array)
        if i % 5 == 0:
            img = img.convert("L")
        path = root / f"{i}.{'jpg' if i % 3 == 0 else 'png'}"
        img.save(path)
        paths.append(str(path))
        labels.append(i % 3)
    return ImageFiles(paths, labels, "varied")


def make_loader(files: ImageFiles, *, workers: int, batch: int = 4, rank: int = 0, world: int = 1,
                augment: object = "default", transform: object = None, drop_last: bool = False,
                skip_bad: bool = False) -> WorkerLoader:
    sampler = InstanceSampler(files.labels, 3)
    if augment == "default":
        augment = Compose([PadCropFlip(pad=2), ColorJitter(0.4, 0.4, 0.4)])
    return WorkerLoader(files, batch, torch.device("cpu"), sampler=sampler,
                        transform=transform or RandomResizedCropFlip(16), normalize=Normalize((0.5,) * 3, (0.25,) * 3),
                        augment=augment, seed=7, drop_last=drop_last, rank=rank, world_size=world, workers=workers,
                        skip_bad=skip_bad)


def epoch_batches(loader: WorkerLoader, epoch: int, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader.epoch(epoch, start)]


def test_loader_same_batches_for_any_worker_count(varied_images: ImageFiles) -> None:
    ref = epoch_batches(make_loader(varied_images, workers=0), 1)
    assert len(ref) == 6 and ref[-1][0].shape == (2, 3, 16, 16)  # 22 images, batch 4, last one partial
    for workers in (1, 2):
        loader = make_loader(varied_images, workers=workers)
        for epoch in (1, 2):
            got = epoch_batches(loader, epoch)
            expected = ref if epoch == 1 else epoch_batches(make_loader(varied_images, workers=0), 2)
            assert len(got) == len(expected)
            for (x, y), (xr, yr) in zip(got, expected):
                assert torch.equal(y, yr) and torch.equal(x, xr)
    other = epoch_batches(make_loader(varied_images, workers=0), 2)
    assert not torch.equal(other[0][0], ref[0][0])  # a new epoch: new order and new crops


def test_loader_start_step_skips_without_decoding(varied_images: ImageFiles) -> None:
    calls = []

    class Counting(RandomResizedCropFlip):
        def __call__(self, path: str, seed: int) -> np.ndarray:
            calls.append(path)
            return super().__call__(path, seed)

    full = epoch_batches(make_loader(varied_images, workers=0, transform=Counting(16)), 3)
    calls.clear()
    tail = epoch_batches(make_loader(varied_images, workers=0, transform=Counting(16)), 3, start=4)
    assert len(calls) == 4 + 2  # steps 4 and 5 only (the last batch holds 2 images)
    assert len(tail) == 2
    for (x, y), (xr, yr) in zip(tail, full[4:]):
        assert torch.equal(x, xr) and torch.equal(y, yr)
    assert epoch_batches(make_loader(varied_images, workers=0), 3, start=6) == []


def test_loader_ranks_take_their_share_of_the_global_batch(varied_images: ImageFiles) -> None:
    whole = epoch_batches(make_loader(varied_images, workers=0, drop_last=True), 1)
    parts = [epoch_batches(make_loader(varied_images, workers=0, rank=r, world=2, drop_last=True), 1)
             for r in range(2)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 5
    for step, (x, y) in enumerate(whole):
        for r in range(2):
            assert torch.equal(parts[r][step][0], x[r::2]) and torch.equal(parts[r][step][1], y[r::2])


def test_eval_loader_order_and_shards(varied_images: ImageFiles) -> None:
    t = CenterResizeCrop(16)
    norm = Normalize((0.5,) * 3, (0.25,) * 3)
    whole = list(WorkerEvalLoader(varied_images, 5, torch.device("cpu"), transform=t, normalize=norm, workers=0))
    labels = torch.cat([y for _, y in whole])
    assert torch.equal(labels, varied_images.labels)
    expected0 = norm(torch.from_numpy(t(varied_images.path(0)).copy()).permute(2, 0, 1)[None])
    torch.testing.assert_close(whole[0][0][:1], expected0)
    shard = list(WorkerEvalLoader(varied_images, 5, torch.device("cpu"), transform=t, normalize=norm, rank=1,
                                  world_size=2, workers=0))
    assert torch.equal(torch.cat([y for _, y in shard]), varied_images.labels[1::2])
    assert torch.equal(torch.cat([x for x, _ in shard]), torch.cat([x for x, _ in whole])[1::2])


# ------------------------------------------------------------------------------------ bad images


def test_corrupt_image_during_training_names_the_file(tmp_path: Path, varied_images: ImageFiles) -> None:
    bad = tmp_path / "bad.jpg"
    data = Path(varied_images.path(0)).read_bytes()
    bad.write_bytes(data[: len(data) // 3])  # a truncated JPEG: the header reads, the pixels do not
    paths = [str(bad)] + [varied_images.path(i) for i in range(1, len(varied_images))]
    files = ImageFiles(paths, varied_images.labels, "x.json")
    with pytest.raises(DataError, match=r"cannot decode image .*bad\.jpg"):
        epoch_batches(make_loader(files, workers=0), 1)
    loader = make_loader(files, workers=0, skip_bad=True)
    with pytest.warns(DataWarning, match=r"epoch 1: left out 1 images .*bad\.jpg"):
        batches = epoch_batches(loader, 1)
    assert sum(len(y) for _, y in batches) == len(files) - 1
    assert loader.skipped_images == 1
    with pytest.raises(DataError, match=r"(?s)1 of 22 images could not be decoded.*bad\.jpg"):
        decode_all(files, CenterResizeCrop(16), workers=0)
    with pytest.warns(DataWarning):
        decoded = decode_all(files, CenterResizeCrop(16), workers=0, skip_bad=True)
    assert decoded.valid.tolist() == [False] + [True] * 21


# -------------------------------------------------------------------------------------- datasets


def data_cfg(train: Path, test: Path, *extra: str) -> Config:
    return load_config(None, ["data.dataset=json", f"data.train_json={train}", f"data.test_json={test}",
                              "data.image_size=32", "data.workers=0", *extra])


def test_json_dataset_device_and_workers(tmp_path: Path) -> None:
    train_json, test_json = write_json_dataset(tmp_path, [5, 3, 2], test_per_class=2)
    cfg = data_cfg(train_json, test_json, "data.test_crop_ratio=1.0")
    splits = build_splits(cfg)  # auto: 16 images of 32x32 fit the budget -> decoded arrays
    assert isinstance(splits.train, ArrayDataset) and isinstance(splits.test, ArrayDataset)
    assert list(splits.stats.train_counts) == [5, 3, 2] and splits.num_classes == 3 and splits.val is None
    first = json.loads(train_json.read_text())["annotations"][0]
    expected = np.asarray(Image.open(tmp_path / first["fpath"])).transpose(2, 0, 1)
    np.testing.assert_array_equal(splits.train.images[0].numpy(), expected)
    assert splits.mean == (0.485, 0.456, 0.406)

    cfg = data_cfg(train_json, test_json, "data.loader=workers", "data.augment=rrc_flip", "data.color_jitter=0.4")
    splits = build_splits(cfg)
    assert isinstance(splits.train, ImageFiles) and list(splits.stats.train_counts) == [5, 3, 2]
    ctx = DistContext()
    sampler = InstanceSampler(splits.train.labels, 3)
    loader = build_train_loader(cfg, splits, sampler, ctx)
    assert isinstance(loader, WorkerLoader) and loader.steps_per_epoch(1) == 0  # batch 128 > 10 images
    assert isinstance(build_eval_loader(cfg, splits, splits.test, ctx), WorkerEvalLoader)
    assert isinstance(device_augment(cfg), ColorJitter)


def test_json_dataset_errors(tmp_path: Path) -> None:
    train_json, test_json = write_json_dataset(tmp_path, [2, 2], test_per_class=1)
    with pytest.raises(ConfigError, match=r"data\.train_json"):
        load_config(None, ["data.dataset=json", f"data.test_json={test_json}"])
    missing = write_json(tmp_path / "m.json", [("train/class_00/0000.png", 0), ("nowhere/x.png", 1)], 2)
    with pytest.raises(DataError, match=r"m\.json: 1 of 2 image files do not exist"):
        build_splits(data_cfg(missing, test_json))
    empty = write_json(tmp_path / "e.json", [("train/class_00/0000.png", 0)], 2)
    with pytest.raises(DataError, match=r"e\.json: 1 of 2 classes have no training images: 1"):
        build_splits(data_cfg(empty, test_json))
    other = write_json(tmp_path / "o.json", [("test/class_00/0000.png", 0)], 5)
    with pytest.raises(DataError, match=r"o\.json: num_classes is 5, but the training JSON has 2"):
        build_splits(data_cfg(train_json, other))
    # a relative image root: fpaths resolve against data.image_root instead of the JSON's folder
    moved = write_json(tmp_path / "sub" / "t.json", [("class_00/0000.png", 0), ("class_01/0000.png", 1)], 2)
    splits = build_splits(data_cfg(moved, moved, f"data.image_root={tmp_path / 'train'}", "data.loader=workers"))
    assert splits.train.path(1) == str(tmp_path / "train" / "class_01" / "0000.png")
    with pytest.raises(ConfigError, match="rrc_flip"):
        build_splits(data_cfg(train_json, test_json, "data.loader=device", "data.augment=rrc_flip"))


def test_skip_bad_images_before_training(tmp_path: Path) -> None:
    train_json, test_json = write_json_dataset(tmp_path, [3, 2], test_per_class=1)
    (tmp_path / "train" / "class_00" / "0001.png").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"1 of 5 image files cannot be read"):
        build_splits(data_cfg(train_json, test_json, "data.check_images=header"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = build_splits(data_cfg(train_json, test_json, "data.check_images=header",
                                       "data.skip_bad_images=true"))
    assert list(splits.stats.train_counts) == [2, 2]
    assert any("leaving out 1 unreadable" in str(w.message) for w in caught)


def test_image_folder_dataset(tmp_path: Path) -> None:
    write_folder(tmp_path / "train", [3, 1], names=["b", "a"])
    write_folder(tmp_path / "test", [1], names=["b"])
    cfg = load_config(None, ["data.dataset=image_folder", f"data.root={tmp_path}", "data.image_size=32",
                             "data.workers=0", "data.loader=workers"])
    splits = build_splits(cfg)
    assert splits.class_names == ["a", "b"] and list(splits.stats.train_counts) == [1, 3]
    assert splits.test.labels.tolist() == [1]
    write_folder(tmp_path / "test", [1], names=["c"])
    with pytest.raises(DataError, match=r"class folders \['c'\] do not exist"):
        build_splits(cfg)


# ---------------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("loader", [pytest.param("workers", marks=pytest.mark.slow), "device"])
def test_tiny_training_run_on_a_json_dataset(tmp_path: Path, loader: str, capsys: pytest.CaptureFixture[str]) -> None:
    train_json, test_json = write_json_dataset(tmp_path / "data", [12, 8, 4], test_per_class=3)
    (tmp_path / "data" / "train" / "class_00" / "0003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "run"
    args = ["train", "data.dataset=json", f"data.train_json={train_json}", f"data.test_json={test_json}",
            "data.image_size=32", f"data.loader={loader}", "data.workers=1", "data.color_jitter=0.4",
            "data.check_images=exists", "data.skip_bad_images=true",
            "model.backbone=resnet_cifar", "model.backbone_params={depth: 8, width: 4}", "train.epochs=2",
            "train.milestones=[]", "train.warmup_epochs=0", "train.batch_size=8", "device=cpu",
            f"out={out}", "train.progress=false"]
    if loader == "workers":
        args.append("data.augment=rrc_flip")
    assert main(args) == 0
    assert "0003.png" in capsys.readouterr().err  # the left-out file is named
    result = json.loads((out / "eval.json").read_text())
    assert result["num_samples"] == 9 and result["epoch"] == 2 and len(result["per_class"]) == 3
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2
    if loader == "workers":  # the broken file is left out of its batch each epoch, counted in the metrics
        assert result["train_counts"] == [12, 8, 4]
        assert [m["skipped_images"] for m in metrics] == [1, 1]
    else:  # decoded once: left out of the training split before training starts
        assert result["train_counts"] == [11, 8, 4]
        assert all("skipped_images" not in m for m in metrics)
