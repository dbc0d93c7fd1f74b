"""The front door as a user meets it: --version, --json everywhere results are printed, usage
errors exit 2, silences listed and lifted, a run summary for people, completion of rule names,
and a clear word when the PostgreSQL driver is missing."""

from __future__ import annotations

import json
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

from outreach.cli import cli
from tests.worlds import NOON, customer, late_order, stalled_checkout, write_world

AT = NOON.isoformat()
REPO = Path(__file__).resolve().parents[2]


def write_settings(root: Path, database_url: str) -> Path:
    write_world(root)
    settings = root / "settings.toml"
    settings.write_text(
        f'[database]\nurl = "{database_url}"\n'
        '[paths]\nrules = "rules"\ntemplates = "templates"\noutbox = "var/outbox.jsonl"\n'
        '[delivery]\nlocales = ["en"]\nmax_per_day = 1\nmax_per_week = 3\nconcurrency = 1\n',
        encoding="utf-8",
    )
    return settings


def outreach(settings: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--settings", str(settings), *args], catch_exceptions=False)


@pytest.fixture
def settings(tmp_path: Path, database_url: str, engine: Engine) -> Path:
    """A deployment with a late order (c1, o1) and a stalled checkout of the same customer."""
    customer(engine, "c1")
    late_order(engine, "o1", "c1")
    stalled_checkout(engine, "k1", "c1")
    return write_settings(tmp_path, database_url)


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"outreach {version('outreach')}\n"


@pytest.mark.parametrize(
    "args",
    [
        ["silence", "late-delivery", "--for", "7x", "--reason", "outage"],
        ["report", "--since", "7x"],
        ["run", "--once", "--now", "tomorrow"],
        ["run", "--rows"],
        ["ingest", "--table", "nope", "settings.toml"],
        ["tasks", "--status", "pending"],
    ],
    ids=[
        "silence --for 7x",
        "report --since 7x",
        "run --now tomorrow",
        "--rows without --once",
        "--table nope",
        "tasks --status",
    ],
)
def test_a_bad_option_value_is_a_usage_error_exit_2(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = outreach(write_settings(tmp_path, sqlite_url), *args)
    assert result.exit_code == 2, result.output
    assert "Error:" in result.stderr and "Traceback" not in result.output


def test_run_once_prints_counts_per_rule_and_outcome_and_rows_only_on_request(settings: Path) -> None:
    result = outreach(settings, "run", "--once", "--now", AT)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"tick at {AT}: 2 match(es), 1 sent" in out
    assert "contacts by rule and outcome" in out and "skipped: cap" in out
    assert "daily cap reached" not in out  # the reasons are rows: only with --rows
    assert "--rows" in out

    # Again at the same instant: nothing is decided twice, and the contact a cap held back waits
    # for the customer's next day (nothing that could change its answer has changed).
    again = outreach(settings, "run", "--once", "--now", AT)
    assert f"tick at {AT}: 0 match(es), 0 sent" in again.stdout


def test_run_once_rows_give_each_contact_its_outcome_and_reason(settings: Path) -> None:
    result = outreach(settings, "run", "--once", "--now", AT, "--rows")
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith("  c1 ")]
    assert [(line[1], line[3]) for line in lines] == [("o1", "sent"), ("k1", "skipped:")]
    assert "daily cap reached (1 a day) by late-delivery" in result.stdout


def test_run_once_json_is_one_document_with_counts_and_contacts(settings: Path) -> None:
    result = outreach(settings, "run", "--once", "--now", AT, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["now"] == AT and document["paused"] is False and document["sent"] == 1
    assert {(c["rule"], c["outcome"], c["count"]) for c in document["counts"]} == {
        ("late-delivery", "sent", 1),
        ("stalled-checkout", "skipped: cap", 1),
    }
    assert [list(c) for c in document["contacts"]] == [
        ["rule", "customer_id", "entity_id", "channel", "outcome", "reason"]
    ] * 2
    assert document["dispatch"]["sent"] == 1


def test_while_paused_the_run_table_names_the_reason_and_contacts_read_as_held(settings: Path) -> None:
    assert outreach(settings, "pause", "--reason", "bad template shipped").exit_code == 0
    result = outreach(settings, "run", "--once", "--now", AT, "--rows")
    assert result.exit_code == 0, result.output
    assert "PAUSED (bad template shipped)" in result.stdout
    [row] = [line for line in result.stdout.splitlines() if line.startswith("  c1  o1")]
    assert row.split()[3] == "held" and "held until `outreach resume`" in row
    assert " send " not in row
    document = json.loads(outreach(settings, "run", "--once", "--now", AT, "--json").stdout)
    assert document["pause_reason"] == "bad template shipped"


def test_a_silenced_rules_contacts_read_as_held_with_the_silence(settings: Path) -> None:
    assert (
        outreach(
            settings, "silence", "late-delivery", "--for", "3650d", "--reason", "carrier outage"
        ).exit_code
        == 0
    )
    result = outreach(settings, "run", "--once", "--now", AT, "--json")
    document = json.loads(result.stdout)
    [late] = [c for c in document["contacts"] if c["rule"] == "late-delivery"]
    assert late["outcome"] == "held" and "silenced (carrier outage)" in late["reason"]
    assert document["silenced"]["late-delivery"]["reason"] == "carrier outage"
    assert document["sent"] == 0


def test_silences_lists_each_silence_with_its_reason_and_end_and_unsilence_lifts_it(settings: Path) -> None:
    assert outreach(settings, "silences").stdout.strip() == "no rule is silenced"
    assert (
        outreach(settings, "silence", "late-delivery", "--for", "6h", "--reason", "carrier outage").exit_code
        == 0
    )
    listed = outreach(settings, "silences")
    assert listed.exit_code == 0
    assert "late-delivery" in listed.stdout and "carrier outage" in listed.stdout
    document = json.loads(outreach(settings, "silences", "--json").stdout)
    [silence] = document["silences"]
    assert (silence["rule"], silence["reason"]) == ("late-delivery", "carrier outage")
    assert silence["until"] > silence["since"]

    lifted = outreach(settings, "unsilence", "late-delivery")
    assert (lifted.exit_code, lifted.stdout) == (0, "late-delivery: silence lifted\n")
    assert json.loads(outreach(settings, "silences", "--json").stdout)["silences"] == []
    again = outreach(settings, "unsilence", "late-delivery")
    assert (again.exit_code, again.stdout) == (0, "late-delivery was not silenced\n")


def test_unsilence_of_a_name_that_is_neither_rule_nor_silence_exits_1_with_did_you_mean(
    settings: Path,
) -> None:
    result = outreach(settings, "unsilence", "late-delivry")
    assert result.exit_code == 1
    assert "no rule or silence named 'late-delivry' (did you mean 'late-delivery'?)" in result.stderr


def test_check_json_lists_the_rules_or_every_problem(tmp_path: Path) -> None:
    for folder in ("rules", "templates"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    shutil.copy(REPO / "settings.toml", tmp_path / "settings.toml")
    settings = tmp_path / "settings.toml"
    ok = outreach(settings, "check", "--json")
    assert ok.exit_code == 0, ok.output
    document = json.loads(ok.stdout)
    assert document["ok"] is True and document["errors"] == 0
    assert document["rules"] == ["late-delivery", "stalled-checkout", "detractor-follow-up"]

    rules = tmp_path / "rules" / "canonical.yaml"
    text = rules.read_text(encoding="utf-8")
    line = text[: text.index("priority: 20")].count("\n") + 1
    rules.write_text(text.replace("priority: 20", "priorty: 20"), encoding="utf-8")
    bad = outreach(settings, "check", "--json")
    assert bad.exit_code == 1
    [problem] = json.loads(bad.stdout)["problems"]
    assert (problem["file"].endswith("canonical.yaml"), problem["line"], problem["rule"]) == (
        True,
        line,
        "late-delivery",
    )
    assert problem["message"] == "unknown field 'priorty' (did you mean 'priority'?)"
    assert json.loads(bad.stdout)["rules"] == ["stalled-checkout", "detractor-follow-up"]


def test_ingest_json_reports_each_file_loaded_or_rejected_with_its_problems(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = write_settings(tmp_path, sqlite_url)
    good = tmp_path / "customers.jsonl"
    good.write_text(
        '{"id": "c-1", "name": "Ada", "phone": "+447911123456", "sms_opt_in": true}\n', encoding="utf-8"
    )
    loaded = outreach(settings, "ingest", str(good), "--json")
    assert loaded.exit_code == 0, loaded.output
    [report] = json.loads(loaded.stdout)["files"]
    assert (report["table"], report["loaded"], report["records"], report["problems"]) == (
        "customers",
        True,
        1,
        [],
    )

    bad = tmp_path / "more" / "customers.jsonl"
    bad.parent.mkdir()
    bad.write_text('{"id": "c-2", "name": "Bo", "phone": "+1 800 FLOWERS"}\n', encoding="utf-8")
    rejected = outreach(settings, "ingest", str(bad), "--json")
    assert rejected.exit_code == 1
    [report] = json.loads(rejected.stdout)["files"]
    assert report["loaded"] is False and report["bad_lines"] == 1
    assert report["problems"][0]["line"] == 1 and "has letters in it" in report["problems"][0]["message"]


def complete(settings_args: list[str], words: list[str]) -> Result:
    """What bash completion offers after `outreach SETTINGS_ARGS WORDS…` (click's protocol)."""
    line = ["outreach", *settings_args, *words]
    env = {
        "_OUTREACH_COMPLETE": "bash_complete",
        "COMP_WORDS": " ".join(line),
        "COMP_CWORD": str(len(line) - 1),
    }
    return CliRunner().invoke(cli, [], env=env, prog_name="outreach")


@pytest.mark.parametrize("command", ["preview", "silence", "unsilence", "send-test"])
def test_rule_names_complete_for_commands_that_take_a_rule(
    tmp_path: Path, sqlite_url: str, command: str
) -> None:
    settings = write_settings(tmp_path, sqlite_url)
    result = complete(["--settings", str(settings)], [command, "late"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["plain,late-delivery"]
    everything = complete(["--settings", str(settings)], [command, ""])
    assert len(everything.stdout.splitlines()) == 4


def test_rule_completion_offers_nothing_quietly_when_the_settings_cannot_be_read(tmp_path: Path) -> None:
    result = complete(["--settings", str(tmp_path / "missing.toml")], ["preview", "la"])
    assert (result.exit_code, result.stdout.strip(), result.stderr) == (0, "", "")


def test_a_postgresql_url_without_the_driver_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if `outreach[postgres]` were not installed
    settings = write_settings(tmp_path, "postgresql://outreach@127.0.0.1:1/outreach")
    result = CliRunner().invoke(cli, ["--settings", str(settings), "silences"])
    assert result.exit_code == 1
    assert "PostgreSQL driver" in result.stderr and "pip install 'outreach[postgres]'" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
