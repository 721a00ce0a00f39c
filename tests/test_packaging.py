"""What a user installs is consistent: one version everywhere, lower bounds that equal the checked minimum
constraints, extras that pull only what they serve, an sdist that holds what its tests need, and a
.gitignore that covers what the Quick start writes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml

import fcc_lt
from conftest import subprocess_env

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*(.*)$")


def requirements() -> dict[str, str]:
    """name -> specifier of every requirement, the dependencies and every extra (self-references left out)."""
    found = {}
    project = PYPROJECT["project"]
    for text in [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]:
        name, spec = REQUIREMENT.match(text).groups()
        if name.lower() != "fcc-lt":
            found[name.lower()] = spec
    return found


def build_backend_available() -> None:
    """Skip unless this environment can run the build backend as pip's isolated build would (setuptools >= 77
    and the packaging >= 24.2 it needs for license expressions)."""
    setuptools = pytest.importorskip("setuptools")
    packaging = pytest.importorskip("packaging")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip("needs setuptools >= 77, the build requirement")
    if tuple(int(p) for p in packaging.__version__.split(".")[:2]) < (24, 2):
        pytest.skip(f"setuptools needs packaging >= 24.2 here, this environment has {packaging.__version__}")


def test_one_version_everywhere() -> None:
    version = fcc_lt.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fcc_lt.__version__"}
    done = subprocess.run([sys.executable, "-m", "fcc_lt", "--version"], env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == f"fcc {version}"
    assert re.search(r"^## \[(\d+\.\d+\.\d+)\]", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE).group(1) == version
    assert yaml.safe_load((REPO / "CITATION.cff").read_text())["version"] == version


def test_the_wheel_metadata_has_that_version(tmp_path: Path) -> None:
    """What the build backend writes into the wheel (PEP 517 metadata hook, as pip calls it)."""
    build_backend_available()
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    metadata = (tmp_path / done.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert f"\nVersion: {fcc_lt.__version__}\n" in metadata
    assert "\nLicense-Expression: MIT\n" in metadata and "\nLicense-File: LICENSE\n" in metadata
    assert "\nRequires-Python: >=3.11\n" in metadata


def test_lower_bounds_are_the_checked_minimum_constraints() -> None:
    pins = {}
    for line in (REPO / "constraints" / "minimum.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    for name, spec in requirements().items():
        lower = re.search(r">=\s*([0-9][0-9.]*)", spec)
        assert lower, f"{name}: no lower bound"
        assert name in pins, f"{name}: not in constraints/minimum.txt"
        pinned, bound = pins[name].split("."), lower.group(1).split(".")
        assert pinned[: len(bound)] == bound and all(p == "0" for p in pinned[len(bound):]), (name, spec, pins[name])


def test_extras_pull_only_what_they_serve() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    test = {REQUIREMENT.match(r).group(1).lower() for r in extras["test"]}
    assert test == {"pytest", "hypothesis"}  # trackers, submitit and exporters have their own extras
    assert {REQUIREMENT.match(r).group(1) for r in extras["trackers"]} == {"tensorboard", "mlflow-skinny", "wandb"}
    assert "pip install -e \".[test,trackers,slurm,export]\"" in (REPO / "README.md").read_text()


def test_the_sdist_holds_what_its_tests_need(tmp_path: Path) -> None:
    build_backend_available()
    code = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    name = done.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as tar:
        members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
    tracked = subprocess.run(["git", "ls-files", "tests", "docs", "src"], cwd=REPO, capture_output=True,
                             text=True).stdout.split() if shutil.which("git") and (REPO / ".git").exists() else []
    needed = set(tracked) or {"tests/conftest.py", "tests/cifar_fixtures.py", "tests/fixtures/run_v0_1_0/config.yaml",
                              "docs/design.md", "src/fcc_lt/configs/cifar10_lt/ce_fcc_if100.yaml"}
    assert needed - members == set()
    assert {"LICENSE", "CHANGELOG.md", "CITATION.cff", "constraints/minimum.txt", "mkdocs.yml"} <= members


def test_gitignore_covers_what_the_quick_start_writes(tmp_path: Path) -> None:
    if not shutil.which("git") or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["runs/x/config.yaml", "reports/report.md", "figs/per_class.png", ".venv/bin/python", "best_model.pth",
             "data/cifar-10-python.tar.gz", "site/index.html", "src/fcc_lt/__pycache__/api.cpython-311.pyc"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO, capture_output=True, text=True)
    assert sorted(done.stdout.split()) == sorted(paths)
    kept = subprocess.run(["git", "check-ignore", "--no-index", "tests/fixtures/run_v0_1_0/checkpoints/last.pt",
                           "src/fcc_lt/configs/cifar10_lt/ce_if100.yaml"], cwd=REPO, capture_output=True, text=True)
    assert kept.stdout == ""


def test_the_citations_agree() -> None:
    """README's BibTeX, the docs' home page and CITATION.cff name the same paper, authors and version."""
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    paper = cff["preferred-citation"]
    authors = " and ".join(f"{a['family-names']}, {a['given-names']}" for a in paper["authors"])
    for page in (REPO / "README.md", REPO / "docs" / "index.md"):
        text = page.read_text()
        assert f"author    = {{{authors}}}" in text, page
        assert f"title     = {{{paper['title']}}}" in text and f"url       = {{{paper['url']}}}" in text, page
    assert f"version = {{{fcc_lt.__version__}}}" in (REPO / "README.md").read_text()
    assert cff["license"] == PYPROJECT["project"]["license"] == "MIT"
