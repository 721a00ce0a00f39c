"""The docs stay true to the code: every config key is documented, every documented key exists,
and the README's links and shipped-config commands point at real files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fcc_lt.config.recipes import resolve_sweep, shipped_config
from fcc_lt.config.schema import all_keys

REPO = Path(__file__).resolve().parents[1]


def test_config_reference_lists_exactly_the_keys() -> None:
    text = (REPO / "docs" / "config.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", text, flags=re.MULTILINE))
    leaves = {k for k in all_keys() if k not in {"data", "model", "train", "fcc", "loss", "sampler", "mix",
                                                  "distill", "eval"}}
    assert leaves - documented == set(), "keys missing from docs/config.md"
    assert documented - leaves == set(), "docs/config.md documents keys that do not exist"


SHIPPED = r"(?:cifar10_lt|cifar100_lt|imagenet_lt|inat18)"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_readme_links_exist_and_it_starts_with_the_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        if not link.startswith(("http://", "https://")):
            assert (REPO / link).exists(), link
    first_block = text.split("```")[1]
    assert "fcc train cifar10_lt/ce_fcc_if100" in first_block and "pytest" in first_block


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_shipped_recipes_are_named_not_given_as_repository_paths(page: Path) -> None:
    """Recipes are package data: a user of the wheel has no configs/ folder, so pages use their names, and
    every name a page runs (`fcc train NAME`, `fcc config NAME`, `fcc sweep NAME`) is a shipped recipe."""
    text = page.read_text()
    assert not re.findall(rf"(?<![\w/])configs/{SHIPPED}/", text), "use the recipe's name, not configs/..."
    assert not re.findall(r"(?<![\w/])sweeps/[\w]+\.yaml", text.replace("sweeps/ce_vs_fcc.yaml", "")), "a spec's name"
    for command, name in re.findall(rf"fcc (train|config|eval) \"?({SHIPPED}/[a-z0-9_/]+(?:\.yaml)?)\b", text):
        assert shipped_config(name) is not None, f"fcc {command} {name}"
    for name in re.findall(r"fcc sweep ([a-z0-9_]+)(?![\w./])", text):
        assert resolve_sweep(name).is_file(), f"fcc sweep {name}"


def test_the_docs_site_builds_strict(tmp_path: Path) -> None:
    """mkdocs build --strict: a broken link or anchor, or a page the navigation leaves out, fails it
    (the docs extra; CI builds it in its own step too)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                                       "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fcc_lt.load" in (tmp_path / "site" / "api" / "index.html").read_text()
