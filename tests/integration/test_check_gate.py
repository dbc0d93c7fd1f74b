"""`outreach check` and `check_all` are one gate: every broken rules file and template edit of the
hostile corpus is refused by both, with the same located problems, and a good set passes both.

The daemon's reload accepts what `check_all` accepts, so this is also what a live edit meets.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach.app import App
from outreach.checks import Checked, check_all
from outreach.cli import cli
from outreach.settings import load_settings
from tests.hostile import REPO, RULES_CASES, TEMPLATE_CASES, RulesCase, TemplateCase


def workspace(root: Path) -> Path:
    """The shipped rules and templates under ROOT, and a settings.toml naming them."""
    shutil.copytree(REPO / "rules", root / "rules", ignore=shutil.ignore_patterns("tests"))
    shutil.copytree(REPO / "templates", root / "templates")
    settings = root / "settings.toml"
    settings.write_text(
        (REPO / "settings.toml").read_text(encoding="utf-8").replace("var/outreach.db", str(root / "o.db")),
        encoding="utf-8",
    )
    return settings


def both(settings: Path) -> tuple[Checked, int, list[str]]:
    """check_all's answer, and `outreach check`'s exit code and printed problems."""
    checked = check_all(App(load_settings(settings)))
    result = CliRunner().invoke(cli, ["--settings", str(settings), "check"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return checked, result.exit_code, result.stderr.splitlines()


def assert_refused_alike(settings: Path, expect: str) -> None:
    checked, exit_code, printed = both(settings)
    assert not checked.ok
    assert exit_code == 1
    assert any(expect in p.format() for p in checked.errors), [p.format() for p in checked.problems]
    shown = [line for p in checked.problems for line in p.format().splitlines()]
    assert printed[: len(shown)] == shown
    assert printed[len(shown) :] == [f"{len(checked.errors)} error(s), {len(checked.warnings)} warning(s)"]


def test_the_shipped_rules_and_templates_pass_both(tmp_path: Path) -> None:
    checked, exit_code, _ = both(workspace(tmp_path))
    assert checked.ok and checked.renderer is not None
    assert exit_code == 0
    assert checked.rules.names() == ["late-delivery", "stalled-checkout", "detractor-follow-up"]


@pytest.mark.parametrize("case", RULES_CASES, ids=[c.name for c in RULES_CASES])
def test_a_broken_rules_file_is_refused_by_check_and_the_gate_alike(tmp_path: Path, case: RulesCase) -> None:
    settings = workspace(tmp_path)
    (tmp_path / "rules" / "zz-edit.yaml").write_bytes(case.content)
    assert_refused_alike(settings, case.expect)


def test_a_folder_named_like_a_rules_file_is_refused_by_both(tmp_path: Path) -> None:
    settings = workspace(tmp_path)
    (tmp_path / "rules" / "x.yaml").mkdir()
    assert_refused_alike(settings, "is a folder, not a file")


@pytest.mark.parametrize("case", TEMPLATE_CASES, ids=[c.name for c in TEMPLATE_CASES])
def test_a_broken_template_edit_is_refused_by_check_and_the_gate_alike(
    tmp_path: Path, case: TemplateCase
) -> None:
    settings = workspace(tmp_path)
    target = tmp_path / "templates" / case.path
    if case.content is None:
        target.unlink()
    else:
        target.write_bytes(case.content)
    assert_refused_alike(settings, case.expect)
