"""Every YAML file fcc reads (configs, their ``base:`` includes, overrides, sweep specs, a run's config.yaml and
resume history, original configs) goes through one parser that refuses a key written twice, and one bounded
reader that refuses FIFOs, devices and files beyond a size cap, naming the file (issue 18)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fcc_lt.cli.main import main
from fcc_lt.config.explain import explain
from fcc_lt.config.importer import import_config
from fcc_lt.config.load import load_config
from fcc_lt.engine.run_dir import record_resume_changes
from fcc_lt.evaluation.run_loader import load_run_config
from fcc_lt.experiments.run_folder import RunFileError, read_config
from fcc_lt.experiments.sweep.spec import load_spec
from fcc_lt.util import files
from fcc_lt.util.errors import ConfigError

SECOND_FCC = ("train:\n  epochs: 10\n  milestones: [8]\nfcc:\n  enabled: true\n  gamma: 0.5\nseed: 1\n"
              "fcc:\n  gamma: 1.0\n")


def test_a_second_section_in_a_config_is_refused_naming_both_lines(tmp_path: Path) -> None:
    """The reported case: a second `fcc:` block silently replaced the first (fcc.enabled fell back to
    false) and `fcc config` still said valid."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(SECOND_FCC)
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert str(err.value) == (f"{cfg}: key 'fcc' is written twice in one mapping, on line 4 and on line 8; YAML "
                              "would keep only the second silently: write it once")


def test_fcc_config_refuses_it_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(SECOND_FCC)
    assert main(["config", str(cfg)]) == 2
    captured = capsys.readouterr()
    assert "valid" not in captured.out and "on line 4 and on line 8" in captured.err


@pytest.mark.parametrize("text, lines", [
    ("train:\n  epochs: 10\n  lr: 0.1\n  epochs: 20\n", (2, 4)),  # inside a section
    ("train: {epochs: 10, epochs: 20}\n", (1, 1)),  # flow style
    ("loss:\n  name: ldam\n  params:\n    scale: 30\n    scale: 10\n", (4, 5)),  # a part's parameters
])
def test_duplicates_at_any_depth_are_refused(tmp_path: Path, text: str, lines: tuple[int, int]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=f"on line {lines[0]} and on line {lines[1]}"):
        load_config(cfg)


def test_a_yaml_merge_may_still_be_overridden(tmp_path: Path) -> None:
    """`<<: *anchor` followed by the key it overrides is what a merge is for, not a duplicate."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  <<: {epochs: 10, milestones: [8], lr: 0.1}\n  lr: 0.2\n")
    assert load_config(cfg).train.lr == 0.2


def test_duplicates_in_a_base_an_override_and_every_other_yaml_input(tmp_path: Path) -> None:
    base = tmp_path / "_base.yaml"
    base.write_text("seed: 1\nseed: 2\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("base: _base.yaml\n")
    with pytest.raises(ConfigError, match=rf"^{base}: key 'seed' is written twice"):
        load_config(cfg)
    with pytest.raises(ConfigError, match=r"^override 'model.head_params=\{a: 1, a: 2\}': key 'a' is written twice"):
        load_config(None, ["model.head_params={a: 1, a: 2}"])
    spec = tmp_path / "spec.yaml"
    spec.write_text("configs: [c.yaml]\nseeds: [0]\nseeds: [1, 2]\n")
    with pytest.raises(ConfigError, match=rf"^{spec}: key 'seeds' is written twice"):
        load_spec(spec)
    original = tmp_path / "orig.yaml"
    original.write_text("NAME: a\nTRAIN:\n  MAX_EPOCH: 10\n  MAX_EPOCH: 20\n")
    with pytest.raises(ConfigError, match=rf"^{original}: key 'MAX_EPOCH' is written twice"):
        import_config(original)


def test_duplicates_in_a_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\nseed: 1\n")
    with pytest.raises(ConfigError, match=rf"^{run / 'config.yaml'}: key 'seed' is written twice"):
        load_run_config(run)
    with pytest.raises(RunFileError, match="key 'seed' is written twice"):  # fcc report / plot / sweep
        read_config(run)
    short = ["train.milestones=[3]", "train.warmup_epochs=0"]
    (run / "config.yaml").write_text(load_config(None, ["train.epochs=4", *short]).dump())
    (run / "config_history.yaml").write_text("- time: a\n  time: b\n")
    cfg = load_config(None, ["train.epochs=5", *short])
    with pytest.raises(ConfigError, match=rf"^{run / 'config_history.yaml'}: key 'time' is written twice"):
        record_resume_changes(run, cfg, "epoch 2")


# ------------------------------------------------------------------------------------- bounded reads


def finishes(call: Callable[[], Any], seconds: float = 20.0) -> BaseException | None:
    """The exception ``call`` raised (None if none); fails the test if it has not returned in ``seconds``
    (a read blocked on a FIFO: the thread is a daemon, so the test run still ends)."""
    box: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
            box.append(None)
        except BaseException as err:  # handed back to the test
            box.append(err)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert box, f"still reading after {seconds} s"
    return box[0]


def sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_as_config_base_or_run_config_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    try:
        err = finishes(lambda: load_config(fifo))
        assert isinstance(err, ConfigError) and str(err) == (
            f"{fifo}: cannot read config file: it is a FIFO (named pipe), not a regular file")
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"base: {fifo.name}\n")
        err = finishes(lambda: load_config(cfg))
        assert isinstance(err, ConfigError) and "FIFO (named pipe), not a regular file" in str(err)
        run = tmp_path / "run"
        run.mkdir()
        os.symlink(fifo, run / "config.yaml")  # a link to a FIFO is read as what it points to
        err = finishes(lambda: load_run_config(run))
        assert isinstance(err, ConfigError) and "FIFO" in str(err)
    finally:
        _unblock(fifo)


def _unblock(fifo: Path) -> None:
    """Open the FIFO for writing once, so that a reader the old code left blocked on it returns."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader waiting: nothing to unblock
        return
    os.close(fd)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_as_config_or_original_config_is_refused(tmp_path: Path) -> None:
    err = finishes(lambda: load_config("/dev/zero"))
    assert isinstance(err, ConfigError) and str(err) == (
        "/dev/zero: cannot read config file: it is a character device, not a regular file")
    err = finishes(lambda: import_config(Path("/dev/zero")))
    assert isinstance(err, ConfigError) and "character device" in str(err)


def test_a_huge_config_is_refused_before_it_is_read(tmp_path: Path) -> None:
    huge = sparse(tmp_path / "huge.yaml", files.MAX_YAML_BYTES + 1)
    with pytest.raises(ConfigError) as err:
        load_config(huge)
    assert str(err.value) == f"{huge}: cannot read config file: it is 16 MiB, more than the 16 MiB such a file may be"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("base: huge.yaml\n")
    with pytest.raises(ConfigError, match="more than the 16 MiB"):
        explain(cfg)


def test_the_reader_caps_every_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Annotation files, split lists, TFRecords and run files use the general cap (1 GiB by default)."""
    from fcc_lt.data.annotations import load_json
    from fcc_lt.util.errors import DataError

    big = tmp_path / "train.json"
    big.write_text('{"annotations": [], "num_classes": 2}' + " " * 100)
    monkeypatch.setattr(files, "MAX_INPUT_BYTES", 64)
    with pytest.raises(DataError, match=r"train.json: cannot read annotation file: it is 137 bytes, more than the "
                                        r"64 bytes such a file may be"):
        load_json(big)
