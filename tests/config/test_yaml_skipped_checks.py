"""The YAML loader skips its depth and alias checks only where they cannot fire: deep
block nesting (one level per line, or many on one line) and aliases are still refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.yamlsource import MAX_DEPTH, YamlLoadError, load_yaml


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "doc.yml"
    path.write_text(text)
    return load_yaml(path, "doc.yml")


def test_block_nesting_past_the_limit_is_refused_across_lines(tmp_path: Path) -> None:
    text = "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 1))
    text = text.rstrip(":\n") + ": v\n"
    with pytest.raises(YamlLoadError) as err:
        _load(tmp_path, text)
    assert "nested more than" in err.value.problem.message


def test_block_nesting_past_the_limit_is_refused_on_one_line(tmp_path: Path) -> None:
    with pytest.raises(YamlLoadError) as err:
        _load(tmp_path, "- " * (MAX_DEPTH + 1) + "x\n")
    assert "nested more than" in err.value.problem.message


def test_nesting_within_the_limit_loads(tmp_path: Path) -> None:
    data = _load(tmp_path, "- " * (MAX_DEPTH - 1) + "x\n")
    for _ in range(MAX_DEPTH - 1):
        assert isinstance(data, list)
        data = data[0]
    assert data == "x"


def test_a_self_referring_alias_is_still_refused(tmp_path: Path) -> None:
    with pytest.raises(YamlLoadError) as err:
        _load(tmp_path, "a: &x\n  b: *x\n")
    assert "refers to its own anchor" in err.value.problem.message
