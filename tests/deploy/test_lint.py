"""yamllint on every YAML file of k8s/ and deploy/ (settings: tests/deploy/yamllint.yaml)."""

from __future__ import annotations

from pathlib import Path

from yamllint import linter
from yamllint.config import YamlLintConfig

from tests.paths import ROOT

CONFIG = YamlLintConfig(file=str(Path(__file__).with_name("yamllint.yaml")))
FILES = sorted([*(ROOT / "k8s").rglob("*.yaml"), *(ROOT / "deploy").rglob("*.yaml")])


def test_there_is_yaml_to_lint() -> None:
    assert len(FILES) >= 15


def test_yamllint_is_clean() -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{p.line}:{p.column} {p.level} {p.desc} ({p.rule})"
        for path in FILES
        for p in linter.run(path.read_text(), CONFIG, str(path))
    ]
    assert not problems, "\n".join(problems)


def test_yamllint_catches_a_problem() -> None:
    bad = "a: 1\na: 2\nb:   [1,2]\n"
    assert {p.rule for p in linter.run(bad, CONFIG)} >= {"key-duplicates"}
