"""The defaults that ``--help`` and docs/cli.md state are the code's defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from napari_specdip.cli import helptext
from napari_specdip.cli.demo import DEMO_PRESET, DEMO_SIZE, DEMO_THREADS
from napari_specdip.cli.main import build_parser
from napari_specdip.cli.runner import MAX_AUTO_THREADS
from napari_specdip.core.params import (
    DEFAULT_PRESET,
    PRESETS,
    STOP_RULES,
    TASKS,
    RestoreParameters,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"

#: first flag of an option -> the RestoreParameters field whose default it states
FIELDS = {
    "--lipschitz": "lipschitz", "--stop": "stop", "--max-iterations": "max_iterations",
    "--seed": "seed", "--width": "width", "--depth": "depth", "--upsampler": "upsampler",
    "--learning-rate": "learning_rate", "--network": "network", "--result": "output",
    "--signal-every": "signal_every", "--gain": "gain", "--holdout": "holdout",
    "--ensemble": "ensemble", "--noise": "noise", "--noise-fit": "noise_fit",
    "--refine": "refine", "--stop-window": "stop_window", "--stop-epsilon": "stop_epsilon",
    "--patience": "holdout_patience", "--holdout-return": "holdout_return",
}


def _help_entries(text: str) -> dict[str, str]:
    """First flag -> that option's help, whitespace collapsed, from argparse's output."""
    entries: dict[str, str] = {}
    flag = None
    for line in text.splitlines():
        if re.match(r"^  -", line):
            flag = line.split()[0].rstrip(",")
            entries[flag] = line.strip()
        elif flag is not None and line.startswith("   "):
            entries[flag] += " " + line.strip()
        else:
            flag = None
    return {k: " ".join(v.split()) for k, v in entries.items()}


def _doc_rows(text: str) -> dict[str, str]:
    """First flag -> meaning, from the options table of docs/cli.md."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\| `(-[^` ]+)[^|]*\| (.*) \|$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def _same(stated: str, value: object) -> bool:
    if value is None:
        return stated == "auto"
    if isinstance(value, float):
        return float(stated) == value
    return stated == str(value)


def _check_stated_defaults(text: str, field: str) -> None:
    """``text`` says ``default X``, then ``; task Y, task Z`` for the tasks that differ
    (under every preset), then ``; preset V, preset task W`` where another preset
    differs: every value read that way is ``RestoreParameters.for_task(task,
    preset=preset).<field>``, for every task and preset."""
    m = re.search(r"default ([^\s;),]+)((?:; [^;)]+)*)", text)
    assert m, (field, text)
    default, tasks, presets = m.group(1), {}, {}
    for segment in (m.group(2) or "").split("; ")[1:]:
        items = [item.split() for item in segment.split(", ")]
        if not all(len(words) in (2, 3) and words[0] in (*TASKS, *PRESETS) for words in items):
            break  # words after the defaults, e.g. "1.8 with --upsampler gaussian"
        for words in items:
            if words[0] in TASKS:
                assert len(words) == 2 and not presets, (field, text)
                tasks[words[0]] = words[1]
            else:
                assert words[0] != DEFAULT_PRESET, (field, text)
                assert len(words) == 2 or words[1] in TASKS, (field, text)
                presets[tuple(words[:-1])] = words[-1]
    for preset in PRESETS:
        for task in TASKS:
            stated = presets.get((preset, task), tasks.get(task, presets.get((preset,),
                                                                               default)))
            value = getattr(RestoreParameters.for_task(task, preset=preset), field)
            assert _same(stated, value), (field, preset, task, value, text)


@pytest.fixture(scope="module")
def restore_help() -> dict[str, str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return _help_entries(sub.choices["restore"].format_help())  # type: ignore[attr-defined]


@pytest.mark.parametrize("flag", list(FIELDS))
def test_restore_help_states_the_codes_defaults(flag: str, restore_help: dict[str, str]) -> None:
    _check_stated_defaults(restore_help[flag], FIELDS[flag])


@pytest.mark.parametrize("flag", list(FIELDS))
def test_docs_state_the_codes_defaults(flag: str) -> None:
    rows = _doc_rows(DOC.read_text(encoding="utf-8"))
    _check_stated_defaults(rows[flag], FIELDS[flag])


def test_the_reported_disagreements_are_gone(restore_help: dict[str, str]) -> None:
    """--result's default is ema (not the last iterate); --stop explains the hold-out
    rule; the demo's defaults are its preset's."""
    assert RestoreParameters.for_task("denoise").output == "ema"
    assert "default ema" in restore_help["--result"]
    assert "last iterate (default)" not in restore_help["--result"]
    assert all(rule in restore_help["--stop"] for rule in STOP_RULES)
    assert "auto (hold-out:" in restore_help["--stop"]
    assert "ES-WMV as a backstop" not in restore_help["--stop"]
    for preset in PRESETS:
        assert f"{preset} (width {RestoreParameters.for_task('denoise', preset=preset).width}" \
            in restore_help["--preset"]
    assert f"default {DEFAULT_PRESET}" in restore_help["--preset"]
    assert "--no-warm-start" in restore_help["--warm-start"]
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    demo = _help_entries(sub.choices["demo"].format_help())  # type: ignore[attr-defined]
    quick = RestoreParameters.for_task("denoise", preset=DEMO_PRESET)
    assert f"default: the preset's, {quick.stop} for {DEMO_PRESET}" in demo["--stop"]
    assert "ratio for all" not in demo["--stop"]
    assert f"{quick.max_iterations} for {DEMO_PRESET}" in demo["--iterations"]
    assert f"{quick.width} for {DEMO_PRESET}" in demo["--width"]
    assert f"default {DEMO_PRESET}" in demo["--preset"]
    assert f"default {DEMO_SIZE}" in demo["--size"]
    assert f"default {DEMO_THREADS}" in demo["--threads"]
    assert f"at most {MAX_AUTO_THREADS}" in restore_help["--threads"]
    factor = RestoreParameters.for_task("super-resolve").factor
    assert f"(default {factor})" in restore_help["--factor"]


def test_stated_defaults_read_every_preset() -> None:
    """The format the help uses names the presets where they differ."""
    assert helptext.stated_default("width") == "default 64; quick 32, paper 128"
    text = helptext.stated_default("max_iterations")
    _check_stated_defaults(text, "max_iterations")
    assert "paper inpaint" in text  # the paper preset's own inpainting cap


def test_docs_are_generated_from_the_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert helptext.replace_generated(text) == text, \
        "docs/cli.md is stale: run python docs/make_cli_docs.py"
    assert "ratio rule)" not in text.split("## `specdip restore`")[0]  # the demo paragraph


def test_the_docs_table_covers_every_engine_option(restore_help: dict[str, str]) -> None:
    rows = _doc_rows(DOC.read_text(encoding="utf-8"))
    for flag in [*FIELDS, "--task", "--preset", "--mask", "--factor", "--device",
                 "--output-dtype", "--reference", "--threads", "--overwrite", "--noise-sigma",
                 "--noise-gain",
                 "--noise-read-sigma", "--noise-offset", "--warm-start"]:
        assert flag in restore_help, flag
        assert flag in rows, flag


def test_a_new_choice_without_words_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helptext, "STOP_RULES", (*STOP_RULES, "oracle"))
    with pytest.raises(KeyError, match="oracle"):
        helptext.option_help()
