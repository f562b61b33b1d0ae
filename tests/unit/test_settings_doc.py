"""README's configuration table is the settings classes' own."""

from __future__ import annotations

from pathlib import Path

from services.settings_doc import BEGIN, END, render_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_matches_the_settings_classes() -> None:
    text = README.read_text()
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == render_table(), "README.md is stale: run `python -m services.settings_doc --write README.md`"


def test_every_setting_is_documented() -> None:
    for row in render_table().splitlines()[2:]:
        variable, _, _, meaning = (cell.strip() for cell in row.strip("|").split("|"))
        assert variable.startswith("`TAILOR_") and meaning, row
