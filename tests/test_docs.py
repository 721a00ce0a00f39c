"""The docs stay true to the code: every config key is documented, every documented key exists,
and the README's links and shipped-config commands point at real files."""

from __future__ import annotations

import re
from pathlib import Path

from fcc_lt.config.schema import all_keys

REPO = Path(__file__).resolve().parents[1]


def test_config_reference_lists_exactly_the_keys() -> None:
    text = (REPO / "docs" / "config.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", text, flags=re.MULTILINE))
    leaves = {k for k in all_keys() if k not in {"data", "model", "train", "fcc", "loss", "sampler", "mix",
                                                  "distill", "eval"}}
    assert leaves - documented == set(), "keys missing from docs/config.md"
    assert documented - leaves == set(), "docs/config.md documents keys that do not exist"


def test_readme_links_and_configs_exist() -> None:
    text = (REPO / "README.md").read_text()
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (REPO / link).exists(), link
    for config in set(re.findall(r"configs/[\w/]+\.yaml", text)):
        assert (REPO / config).is_file(), config
    first_block = text.split("```")[1]
    assert "fcc train configs/cifar10_lt/ce_fcc_if100.yaml" in first_block and "pytest" in first_block
