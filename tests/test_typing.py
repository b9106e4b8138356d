"""The package type-checks under ``mypy --strict`` (settings in pyproject.toml).

mypy runs in its own process, started right after collection (tests/conftest.py), so its
20 s of CPU overlap the rest of the suite."""

from __future__ import annotations


def test_mypy_strict(mypy_output: tuple[int, str]) -> None:
    returncode, output = mypy_output
    assert returncode == 0, output
    assert "Success: no issues found" in output
