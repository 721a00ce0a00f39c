"""Bad input never costs a traceback or a wasted run: command-line values the command cannot use, file
names no file can have, inputs that are folders, devices or FIFOs, unreadable images among many, YAML
(or a checkpoint's saved config) that expands to billions of values, and messages that name the real
source of a mistake and the real fix."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import tiny_run_overrides
from fcc_lt.cli.main import main
from fcc_lt.config.load import apply_overrides, check_paths, from_dict, load_config
from fcc_lt.config.schema import PATH_KEYS
from fcc_lt.data.annotations import check_files
from fcc_lt.data.images import CenterResizeCrop, DecodeError
from fcc_lt.util.errors import ConfigError, DataError, format_size, path_problem, short_repr
from fcc_lt.util.typecheck import MAX_CONFIG_DEPTH, check_config_size, coerce

SRC = Path(__file__).resolve().parents[2] / "src"
LONG = "n" * 300  # one name over the 255-byte limit of every common filesystem


def child_env() -> dict[str, str]:
    """A child process imports the fcc of this tree, single-threaded."""
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_limited(code: str, timeout: float = 60, memory: int = 2 << 30) -> subprocess.CompletedProcess:
    """``python -c code`` with its address space capped (``memory`` bytes) and a time limit, so that an
    input that blows up fails the test quickly instead of taking the shared machine's memory."""
    def cap() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                              env=child_env(), preexec_fn=cap)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s (the input's work is not bounded)")


def one_error_line(err: str) -> str:
    """The stderr of a failed command: exactly one line starting with 'error:', no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------------------ a real run


@pytest.fixture(scope="module")
def run(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run of the tiny model (no decoding worker processes)."""
    out = tmp_path_factory.mktemp("input") / "run"
    args = tiny_run_overrides(cifar10_root, out, "train.epochs=1", "train.milestones=[]", "data.workers=0",
                              "eval.confusion_png_max_classes=0")
    assert main(["train", *args]) == 0
    return out


def image(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(path)
    return path


# ------------------------------------------------------------------------------ command-line values


@pytest.mark.parametrize("option", [["--top-k", "0"], ["--top-k", "-1"], ["--batch-size", "0"],
                                    ["--batch-size", "-3"], ["--top-k", "two"]])
def test_predict_refuses_counts_below_one(run: Path, tmp_path: Path, option: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Once a traceback from inside topk or the DataLoader (IndexError, RuntimeError, ValueError), or
    with a negative batch size a CSV of nothing; now refused while the command line is read."""
    picture = image(tmp_path / "a.png")
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(run), str(picture), *option])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option[0]}: expected an integer >= 1, got" in err and "Traceback" not in err
    assert not (run / "predictions.csv").exists()


@pytest.mark.parametrize("argv, option", [
    (["data", "cifar-lt", "--imbalance", "nan"], "--imbalance"),
    (["data", "cifar-lt", "--imbalance", "inf"], "--imbalance"),
    (["data", "cifar-lt", "--imbalance", "0.5"], "--imbalance"),
    (["data", "cifar-lt", "--max-per-class", "-4"], "--max-per-class"),
    (["data", "make-lt", "x.json", "--out", "y.json", "--imbalance", "10", "--seed", "-1"], "--seed"),
    (["data", "make-lt", "x.json", "--out", "y.json", "--imbalance", "nan"], "--imbalance"),
    (["data", "make-lt", "x.json", "--out", "y.json", "--imbalance", "10", "--max-per-class", "0"],
     "--max-per-class"),
    (["data", "tfrecords", "in", "--out", "o", "--num-classes", "0"], "--num-classes"),
    (["data", "cam-generate", "run", "--out", "o", "--batch-size", "0"], "--batch-size"),
    (["data", "cam-generate", "run", "--out", "o", "--cap", "0"], "--cap"),
    (["data", "cam-generate", "run", "--out", "o", "--seed", "-2"], "--seed"),
])
def test_every_count_option_is_checked_when_read(argv: list[str], option: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Siblings of --top-k: a NaN imbalance factor once printed a traceback from int(nan), a negative
    --seed one from NumPy's RandomState, --max-per-class -4 a table of negative counts."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected" in err and "Traceback" not in err


def test_cifar_lt_table_warns_about_empty_classes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "cifar-lt", "--max-per-class", "5", "--imbalance", "100"]) == 0
    captured = capsys.readouterr()
    assert "get no images" in captured.err and "can be at most 5 (--imbalance)" in captured.err


# ------------------------------------------------------------------------------- unreadable images


def test_predict_skips_unreadable_images_and_lists_them(run: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """One corrupt file among many used to abort the whole job, advising data.skip_bad_images (a training
    setting predict cannot take); now it costs one row of the CSV, with the reason."""
    folder = tmp_path / "photos"
    good = [image(folder / f"good{i}.png", 40 * i) for i in range(3)]
    junk = folder / "junk.png"
    junk.write_bytes(b"this is not a picture")
    cut = folder / "cut.png"
    cut.write_bytes(good[0].read_bytes()[:60])
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run), str(folder), "--top-k", "2", "--out", str(out), "--batch-size", "2"]) == 0
    captured = capsys.readouterr()
    with open(out, newline="") as f:
        rows = {row["path"]: row for row in csv.DictReader(f)}
    assert set(rows) == {str(p) for p in [*good, junk, cut]}
    for p in good:
        assert rows[str(p)]["error"] == "" and rows[str(p)]["name1"] and float(rows[str(p)]["prob1"]) > 0
    for p in (junk, cut):
        assert rows[str(p)]["class1"] == "" and rows[str(p)]["error"], rows[str(p)]
    assert "not a readable image" in rows[str(junk)]["error"]
    assert "skipped 2 of 5 images" in captured.err and str(junk) in captured.err and str(cut) in captured.err
    assert "data.skip_bad_images" not in captured.err + captured.out
    assert "wrote 3 predictions and 2 skipped images" in captured.out


def test_predict_strict_stops_at_an_unreadable_image(run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    good = image(tmp_path / "good.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG but no more")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run), str(good), str(junk), "--strict", "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(junk) in line and "--strict" in line and "data.skip_bad_images" not in line
    assert not out.exists()
    # nothing readable at all is an error even without --strict: there is nothing to write
    assert main(["predict", str(run), str(junk), "--out", str(out)]) == 2
    assert "none of the 1 images could be read" in capsys.readouterr().err
    assert not out.exists()


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def unblock(path: Path) -> None:
    """Open a FIFO for writing once, so that a reader stuck opening it (old code) returns."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass


def test_predict_names_folders_devices_and_fifos(run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Once "no such file or folder" for things that exist: say what they are instead."""
    cases = {
        Path("/dev/zero"): "/dev/zero: is a character device, not a regular file",
        fifo(tmp_path / "pipe.png"): "pipe.png: is a FIFO (named pipe), not a regular file",
    }
    empty = tmp_path / "looks_like.png"
    empty.mkdir()
    cases[empty] = "looks_like.png: a folder with no image files"
    for path, message in cases.items():
        assert main(["predict", str(run), str(path), "--out", str(tmp_path / "p.csv")]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert message in line, line
    assert main(["predict", str(run), str(tmp_path / "nope.png")]) == 2
    assert "nope.png: no such file or folder" in capsys.readouterr().err


def test_annotation_paths_that_are_folders_or_devices_are_named_as_such(tmp_path: Path) -> None:
    """An fpath that is a folder, /dev/zero or a FIFO was reported as "do not exist", the advice being
    data.image_root, which does not help: the entry itself is wrong."""
    good = str(image(tmp_path / "ok.png"))
    (tmp_path / "a_folder.png").mkdir()
    paths = [good, str(tmp_path / "a_folder.png"), "/dev/zero", str(fifo(tmp_path / "pipe.png"))]
    with pytest.raises(DataError) as err:
        check_files(paths, "exists", "train.json", tmp_path)
    text = str(err.value)
    assert "3 of 4 image paths are not image files" in text and "do not exist" not in text
    assert f"{tmp_path / 'a_folder.png'}: is a folder, not a file" in text
    assert "/dev/zero: is a character device" in text and "pipe.png: is a FIFO" in text
    assert "correct or remove these entries" in text
    # missing files keep their message and advice; a mix says both
    with pytest.raises(DataError, match=r"(?s)2 of 3 image paths are not image files \(1 does not exist, 1 is "
                                        r"not a regular file.*data\.image_root"):
        check_files([good, str(tmp_path / "gone.png"), "/dev/zero"], "exists", "train.json", tmp_path)
    with pytest.raises(DataError, match=rf"{LONG[:40]}.*: has a file or folder name of 300 bytes"):
        check_files([good, str(tmp_path / LONG)], "exists", "train.json", tmp_path)


def test_a_fifo_image_is_never_opened_by_the_decoder(tmp_path: Path) -> None:
    """With data.check_images=none a FIFO reached the decoding worker, which blocked forever in open()."""
    pipe = fifo(tmp_path / "pipe.png")
    result: list[BaseException | None] = []

    def decode() -> None:
        try:
            CenterResizeCrop(32)(str(pipe))
            result.append(None)
        except BaseException as err:  # handed to the test thread
            result.append(err)

    worker = threading.Thread(target=decode, daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():
        unblock(pipe)
        worker.join(timeout=5)
        pytest.fail("decoding a FIFO blocked")
    assert isinstance(result[0], DecodeError) and "FIFO" in str(result[0])
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(DecodeError, match="is a folder, not a file"):
        CenterResizeCrop(32)(str(folder))


# ------------------------------------------------------------------------------ unusable file names


def test_path_problem_finds_what_no_filesystem_takes() -> None:
    assert path_problem("runs/x") is None and path_problem("a" * 255) is None
    assert "NUL byte" in path_problem("runs/a\x00b")
    assert "name of 256 bytes" in path_problem("runs/" + "é" * 128)  # bytes, not characters
    assert "at most 4095 bytes" in path_problem("/".join(["d" * 200] * 21))


@pytest.mark.parametrize("key", PATH_KEYS)
@pytest.mark.parametrize("bad, expected", [(f"x/{LONG}/y", "name of 300 bytes"), ("x\x00y", "NUL byte")],
                         ids=["long", "nul"])
def test_path_keys_are_checked_when_the_config_is_loaded(key: str, bad: str, expected: str) -> None:
    """Once an OSError traceback (ENAMETOOLONG) or ValueError (embedded null byte) from wherever the path
    was first used, possibly after data loading; now a ConfigError naming the key, at load time."""
    override = f"{key}={yaml.safe_dump(bad, default_style=chr(34)).strip()}"
    with pytest.raises(ConfigError, match=rf"^{key}: .*{expected}"):
        load_config(None, [override])
    cfg = load_config(None, [])
    section, _, leaf = key.rpartition(".")
    setattr(cfg if not section else getattr(cfg, section), leaf, bad)
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        check_paths(cfg)


@pytest.mark.parametrize("argv", [
    ["train", "--resume", f"runs/{LONG}"],
    ["eval", f"runs/{LONG}"],
    ["eval", "runs/x", "--checkpoint", f"{LONG}.pt"],
    ["predict", "runs/x", f"photos/{LONG}.png"],
    ["predict", "runs/x", "a.png", "--checkpoint", f"ck/{LONG}"],
    ["predict", "runs/x", "a.png", "--out", f"{LONG}.csv"],
    ["predict", "runs/x", "a.png", "--out", "n" * 250 + ".csv"],  # fits, but its temporary file does not
    ["predict", "runs/x", "a\x00b.png"],
    ["data", "cam-generate", f"runs/{LONG}", "--out", "o"],
    ["import-config", f"{LONG}.yaml"],
    ["data", "from-folder", "imgs", "--out", f"{LONG}.json"],
], ids=lambda a: " ".join(a)[:40].replace("\x00", "NUL"))
def test_path_options_are_checked_when_read(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "bytes" in err or "NUL" in err, err


def test_an_output_file_that_is_a_folder_is_refused_before_the_work(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path), "a.png", "--out", str(tmp_path)])
    assert f"{tmp_path} is a folder; give the name of the file to write" in capsys.readouterr().err


def test_config_file_name_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config file .*name of 305 bytes"):
        load_config(tmp_path / f"{LONG}.yaml")


# ----------------------------------------------------------------------- configs that expand without end


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A few hundred bytes of YAML whose last alias stands for width**levels values."""
    lines = [f"x0: &x0 [{', '.join(['1'] * width)}]"]
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines)


def indented(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


BOMBS = {
    # coerce() built the text of the value for an error it had not raised yet: minutes, gigabytes, and a
    # MemoryError traceback in the end
    "config key": "model:\n  backbone_params:\n" + indented(alias_bomb(), 4) + "\ntrain: {epochs: *x8}\n",
    # the same through a part's parameter, checked by the registry
    "part parameter": "model:\n  backbone: resnet_cifar\n  head_params:\n" + indented(alias_bomb(), 4)
                      + "\n  backbone_params: {depth: *x8}\n",
    # a value that contains itself: endless, not just large
    "recursive": "model:\n  backbone_params: &a {depth: [*a]}\n",
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_config_of_nested_aliases_is_refused_quickly(tmp_path: Path, name: str) -> None:
    text = BOMBS[name]
    assert len(text) < 600
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    code = ("import sys, time\nfrom fcc_lt.cli.main import main\nt = time.monotonic()\n"
            f"rc = main(['train', {str(path)!r}, 'train.progress=false', 'out={tmp_path / 'run'}'])\n"
            "print('seconds', time.monotonic() - t)\nsys.exit(rc)\n")
    done = run_limited(code, timeout=90)
    assert done.returncode == 2, done.stderr[-2000:]
    line = one_error_line(done.stderr)
    assert line.startswith(f"error: {path}: ") and ("expands to more than" in line or "levels deep" in line), line
    seconds = float(done.stdout.split()[-1])
    assert seconds < 15, seconds


def test_an_override_of_nested_aliases_is_refused() -> None:
    value = "{" + ", ".join(f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}" if i else "1"] * 9) + "]"
                            for i in range(9)) + "}"
    with pytest.raises(ConfigError, match=r"^override 'model\.backbone_params=.*expands to more than"):
        load_config(None, [f"model.backbone_params={value}"])


def bomb_value(levels: int = 9) -> list:
    value: list = [1] * 9
    for _ in range(levels):
        value = [value] * 9
    return value


def test_a_checkpoint_whose_saved_config_expands_without_end_is_refused(tmp_path: Path) -> None:
    """A small teacher checkpoint (a pickle shares repeated objects) whose saved config stands for 9**10
    values: reading it back with weights_only is allowed, building a Config from it must be refused."""
    path = tmp_path / "teacher.pt"
    torch.save({"config": {"model": {"backbone_params": {"x": bomb_value()}}}, "model": {}}, path)
    assert path.stat().st_size < 100_000
    code = ("import time, torch\nfrom fcc_lt.config.load import from_dict\nfrom fcc_lt.util.errors import ConfigError\n"
            f"state = torch.load({str(path)!r}, weights_only=True)\nt = time.monotonic()\n"
            "try:\n    from_dict(state['config'], 'teacher.pt (its saved config)')\n"
            "except ConfigError as err:\n    print('refused:', err)\n"
            "print('seconds', time.monotonic() - t)\n")
    done = run_limited(code, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: teacher.pt (its saved config): the config expands to more than" in done.stdout
    assert float(done.stdout.split()[-1]) < 10


def test_config_size_check_is_bounded_and_lets_real_configs_through() -> None:
    cfg = load_config(None, [])
    check_config_size(cfg.to_dict(), "config")  # a real config
    check_config_size({"loss": {"params": {"weights": [0.5] * 100_000}}}, "config")  # a large real list
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"expands to more than 4\.0 MiB"):
        check_config_size({"x": bomb_value(12)}, "x.yaml")  # 9**13 values
    assert time.monotonic() - start < 10
    deep: list = []
    node = deep
    for _ in range(MAX_CONFIG_DEPTH + 5):
        node.append([])
        node = node[0]
    with pytest.raises(ConfigError, match=rf"nested more than {MAX_CONFIG_DEPTH} levels"):
        check_config_size({"x": deep}, "x.yaml")
    huge_int = 10 ** 5000  # beyond Python's int-to-str limit: its repr would raise ValueError
    with pytest.raises(ConfigError, match=r"train\.epochs: expected float, got <an integer of 16610 bits>"):
        coerce(huge_int, float, "train.epochs")


def test_error_messages_show_a_bounded_repr() -> None:
    """The message of a wrong value of 9**21 leaves: repr() of it would never finish (nor fit in memory)."""
    code = ("import time\nfrom fcc_lt.util.errors import ConfigError\nfrom fcc_lt.util.typecheck import coerce\n"
            "value = [1] * 9\nfor _ in range(20):\n    value = [value] * 9\nt = time.monotonic()\n"
            "try:\n    coerce(value, int, 'train.epochs')\nexcept ConfigError as err:\n    print(len(str(err)))\n"
            "print(time.monotonic() - t)\n")
    done = run_limited(code, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    length, seconds = done.stdout.split()
    assert int(length) < 300 and float(seconds) < 1
    assert len(short_repr("x" * 10_000)) <= 100


def test_import_config_of_nested_aliases_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "original.yaml"
    levels = [f"&x0 [{', '.join(['1'] * 9)}]"] + [f"&x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, 9)]
    path.write_text(f"TRAIN:\n  BATCH_SIZE: [{', '.join(levels)}]\n")  # the anchors inside a known key
    done = run_limited("import sys\nfrom fcc_lt.cli.main import main\n"
                       f"sys.exit(main(['import-config', {str(path)!r}]))", timeout=90)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "expands to more than" in one_error_line(done.stderr)


# ------------------------------------------------------------------ messages that name the real source


def test_a_bad_override_is_blamed_not_the_config_file(tmp_path: Path) -> None:
    """`fcc train x.yaml train.epochs=abc` said "x.yaml: train.epochs: ..." as if the file were wrong."""
    path = tmp_path / "x.yaml"
    path.write_text("train:\n  epochs: 30\n")
    for override, message in [
        ("train.epochs=abc", r"^override 'train\.epochs=abc': train\.epochs: expected int, got 'abc'"),
        ("train={epochs: abc}", r"^override 'train=\{epochs: abc\}': train\.epochs: expected int"),
        ("train={epoch: 3}", r"^override 'train=\{epoch: 3\}': unknown key 'train\.epoch'; did you mean "
                             r"'train\.epochs'"),
        ("model.backbone_params=7", r"^override 'model\.backbone_params=7': model\.backbone_params: expected "
                                    r"a mapping"),
        ("data=5", r"^override 'data=5': data must be a mapping"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(path, [override])
    path.write_text("train:\n  epochs: abc\n")  # the file's own mistake still names the file
    with pytest.raises(ConfigError, match=rf"^{path}: train\.epochs: expected int"):
        load_config(path, ["train.lr=0.1"])
    # a later override of the same key takes the blame off an earlier one, and the file is fixed by it
    path.write_text("train:\n  epochs: 30\n")
    assert load_config(path, ["train.epochs=abc", "train.epochs=3", "train.milestones=[2]",
                              "train.warmup_epochs=0"]).train.epochs == 3


def test_the_run_loader_path_blames_overrides_too() -> None:
    """apply_overrides + from_dict, as the run loader uses them on a run's config.yaml."""
    raw = load_config(None, []).to_dict()
    with pytest.raises(ConfigError, match=r"^override 'train\.lr=fast': train\.lr: expected float"):
        from_dict(apply_overrides(raw, ["train.lr=fast"]), "runs/x/config.yaml")
    with pytest.raises(ConfigError, match=r"^override 'train\.epoch=3': unknown key 'train\.epoch'"):
        apply_overrides(raw, ["train.epoch=3"])
    with pytest.raises(ConfigError, match=r"^runs/x/config\.yaml: train\.lr: expected float"):
        from_dict({**raw, "train": {**raw["train"], "lr": "fast"}}, "runs/x/config.yaml")


def write_empty_cifar10(root: Path) -> Path:
    """A CIFAR-10 folder whose training batches hold no image at all (the test batch is intact)."""
    import pickle

    from cifar_fixtures import write_cifar10

    folder = write_cifar10(root, per_class_train=2, per_class_test=2)
    for i in range(1, 6):
        path = folder / f"data_batch_{i}"
        batch = pickle.loads(path.read_bytes(), encoding="bytes")
        batch[b"data"] = batch[b"data"][:0]
        batch[b"labels"] = []
        batch[b"filenames"] = []
        path.write_bytes(pickle.dumps(batch, protocol=4))
    return folder


def test_training_files_without_any_image_say_so(tmp_path: Path) -> None:
    """Every class empty: the message said "the factor can be at most 0", which no factor can fix."""
    from fcc_lt.config.schema import DataConfig
    from fcc_lt.data.cifar import build_cifar

    folder = write_empty_cifar10(tmp_path)
    with pytest.raises(DataError) as err:
        build_cifar(DataConfig(root=str(tmp_path), download=False), "cifar10")
    text = str(err.value)
    assert "at most 0" not in text and "hold no images, so every class is empty" in text
    assert f"delete {folder}" in text


def test_format_size_never_rounds_to_nothing() -> None:
    """The free-space message said "0.0 MiB free, but a checkpoint takes about 0.0 MiB" for 44 KB."""
    assert format_size(44 * 1024 + 300) == "44 KiB"
    assert format_size(0) == "0 bytes" and format_size(1) == "1 byte" and format_size(1023) == "1023 bytes"
    assert format_size(1024) == "1.0 KiB" and format_size(9.9 * 1024) == "9.9 KiB"
    assert format_size(2**20 - 1) == "1.0 MiB"  # not "1024 KiB"
    assert format_size(int(1.5 * 2**30)) == "1.5 GiB" and format_size(3 * 2**40) == "3.0 TiB"
    assert format_size(700 * 2**20) == "700 MiB"


def test_device_option_type() -> None:
    import argparse

    from fcc_lt.util import argtypes

    assert argtypes.device("cpu") == "cpu" and argtypes.device("auto") == "auto"
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="expected auto, cpu, cuda or cuda:N"):
            argtypes.device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(argparse.ArgumentTypeError, match="cuda:1: CUDA is not available here"):
            argtypes.device("cuda:1")


BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize(("script", "args", "message"), [
    ("train_throughput.py", ["--steps", "0"], "argument --steps: expected an integer >= 1, got 0"),
    ("train_throughput.py", ["--amp", "fast"], "argument --amp: invalid choice: 'fast'"),
    ("reference_step.py", ["--rounds", "0"], "argument --rounds: expected an integer >= 1, got 0"),
    ("reference_step.py", ["--archive", "/nonexistent/a.tar.gz"], "--archive /nonexistent/a.tar.gz: no such file"),
    ("compare_trees.py", ["--old", "no-such-rev", "--data-root", "."], "--old no-such-rev: cannot check it out"),
    ("compile_cache.py", ["--device", "gpu"], "argument --device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("optimizer_step.py", ["--steps", "0"], "argument --steps: expected an integer >= 1, got 0"),
    ("decode_pipeline.py", ["--workers", "-1"], "argument --workers: expected an integer >= 0, got -1"),
    ("resnet50_step.py", ["--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got 0"),
    ("cifar_from_jpeg.py", ["/nonexistent/a.tar.gz", "out"], "/nonexistent/a.tar.gz: no such file"),
    ("jpeg_draft.py", ["--sizes", "800"], "argument --sizes: expected WIDTHxHEIGHT such as 800x600, got '800'"),
])
def test_benchmark_scripts_refuse_bad_arguments_without_a_traceback(script: str, args: list[str],
                                                                    message: str, tmp_path: Path) -> None:
    from conftest import subprocess_env

    (tmp_path / "cifar-10-batches-py").mkdir()  # what compare_trees.py checks --data-root for first
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          cwd=tmp_path, env=subprocess_env(), timeout=120)
    assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
