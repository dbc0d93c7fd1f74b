"""The README's Python API example runs as written, so the documentation cannot rot."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    """The first ```python block of the README's "Python API" section."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "the Python API section has no ```python example"
    return found.group(1)


def test_the_readme_python_api_example_runs_a_tick_at_its_instant_and_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for folder in ("rules", "templates"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    shutil.copy(REPO / "settings.toml", tmp_path / "settings.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OUTREACH_SETTINGS", raising=False)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(readme_example(), "README.md (Python API)", "exec"), {"__name__": "readme"})
    lines = printed.getvalue().splitlines()
    assert "'customer_id': 'c-42'" in lines[0] and "'decision': 'send'" in lines[0]
    # structlog's own default (logging left unconfigured, as here) prints its events there too.
    told = [line for line in lines[1:] if not re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[", line)]
    assert told and told[0].startswith("late-delivery c-42 sent "), lines
    outbox = (tmp_path / "var" / "outbox.jsonl").read_text(encoding="utf-8")
    assert '"customer_id":"c-42"' in outbox.replace(" ", "")
