"""Every command and option says what it does (`fcc X --help`), defaults stated as they are, and
`fcc completion bash|zsh` completes commands, options, choices and shipped recipe names in a real shell."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from fcc_lt.cli.main import build_parser, main


def walk(parser: argparse.ArgumentParser, path: str = "fcc"):
    """(command path, action, subcommand help or None) for every action of every (sub)parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", None, helps.get(name)
                yield from walk(sub, f"{path} {name}")
        else:
            yield path, action, None


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, action, command_help in walk(build_parser()):
        if action is None:
            if not command_help:
                missing.append(f"{path} (the command itself)")
        elif not isinstance(action, argparse._HelpAction) and (not action.help or action.help == argparse.SUPPRESS):
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_fcc_configs_help_states_its_real_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["configs", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: the configs shipped in the package" in text and "./configs" not in text
    assert "--sweeps" in text


def complete(shell: str, script: Path, words: list[str]) -> list[str]:
    """What the completion function offers for ``words`` (the last one being completed), in ``shell``."""
    quoted = " ".join(f"'{w}'" for w in words)
    call = ("COMP_WORDS=(" + quoted + "); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _fcc; "
            'printf "%s\\n" "${COMPREPLY[@]}"')
    if shell == "zsh":  # as zsh's bashcompinit runs it: sh emulation (0-based arrays)
        call = f"emulate -L sh; {call}"
        code = f"source {script}; f() {{ {call}; }}; f"
    else:
        code = f"source {script}; {call}"
    done = subprocess.run([shell, "-c", code], capture_output=True, text=True, timeout=60, cwd=script.parent,
                          env={"HOME": str(script.parent), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script(shell: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not shutil.which(shell):
        pytest.skip(f"{shell} is not installed")
    assert main(["completion", shell]) == 0
    script = tmp_path / f"fcc.{shell}"
    script.write_text(capsys.readouterr().out)
    offered = complete(shell, script, ["fcc", "tr"])
    assert "train" in offered and (shell == "zsh" or offered == ["train"])  # zsh filters by the prefix itself
    assert "cifar10_lt/ce_fcc_if100" in complete(shell, script, ["fcc", "train", "cifar10_lt/ce_fcc_if1"])
    assert complete(shell, script, ["fcc", "export", "runs/x", "--format", ""]) == ["torchscript", "onnx",
                                                                                   "safetensors"]
    assert {"cifar-lt", "from-folder", "make-lt"} <= set(complete(shell, script, ["fcc", "data", ""]))
    assert "cifar10_lt_ce_vs_fcc" in complete(shell, script, ["fcc", "sweep", "cifar"])
    options = complete(shell, script, ["fcc", "plot", "per-class", "--"])
    assert {"--out", "--group-by", "--eval-file"} <= set(options) and "--blocks" not in options
    if shell == "bash":
        assert complete(shell, script, ["fcc", "train", "--sm"]) == ["--smoke"]
        assert complete(shell, script, ["fcc", "eval", "runs/x", "--split", "v"]) == ["val"]
