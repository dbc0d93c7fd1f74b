"""Settings are checked when they load: a wrong value names the file (or variable) and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from outreach.errors import ConfigError
from outreach.settings import load_settings


def load(tmp_path: Path, toml: str | bytes, **environ: str) -> str:
    """The error message load_settings gives for TOML (and the environment), or "" if it loads."""
    path = tmp_path / "settings.toml"
    path.write_bytes(toml if isinstance(toml, bytes) else toml.encode())
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environ.items():
            patch.setenv(name, value)
        try:
            load_settings(path)
        except ConfigError as exc:
            return str(exc)
    return ""


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            '[delivery]\nquiet_hours = "25:00-09:00"\n',
            "[delivery.quiet_hours] '25:00-09:00' is not a quiet-hours window",
        ),
        ('[delivery]\nquiet_hours = "21:00-21:00"\n', "are an empty window"),
        ('[delivery]\nlocales = ["en", "xx-nope"]\n', "[delivery.locales] 'xx-nope' is not a known locale"),
        ('[delivery]\nlocales = ["en", "EN"]\n', "lists a locale twice"),
        ("[delivery]\nlocales = []\n", "[delivery.locales]"),
        (
            '[delivery]\ndefault_locale = "fr"\n',
            "delivery.default_locale 'fr' is not in delivery.locales ['en', 'ar']",
        ),
        ('[delivery]\ndefault_every = "99999999999999w"\n', "is too long: a duration is at most 36525d"),
        ('[delivery]\ndefault_every = "0s"\n', "[delivery.default_every] must be longer than 0s"),
        ("[delivery]\nmax_per_day = 99999999999999999999\n", "[delivery.max_per_day]"),
        ("[delivery]\nmax_per_week = -1\n", "[delivery.max_per_week]"),
        ("[daemon]\ngrace_seconds = inf\n", "[daemon.grace_seconds] Input should be a finite number"),
        ("[sendgrid]\ntimeout = nan\n", "[sendgrid.timeout]"),
        (
            "[daemon]\nlease_seconds = 15\n",
            "daemon.lease_seconds (15) must be longer than twice the longest provider timeout (sendgrid.timeout = 10)",
        ),
        (
            '[twilio]\nbase_url = "api.twilio.com"\n',
            "[twilio.base_url] 'api.twilio.com' is not an http(s) URL",
        ),
        ('[sendgrid]\nhost = "ftp://x"\n', "[sendgrid.host] 'ftp://x' is not an http(s) URL"),
        ('[company]\nunsubscribe_url = "https://x/{id}"\n', "the only placeholder is {customer_id}"),
        ('[database]\nurl = "mysql://x/y"\n', "outreach runs on SQLite or PostgreSQL, not mysql"),
        ("[delivery\n", ":1:10: not valid TOML: Expected ']' at the end of a table declaration"),
        (b'[company]\nname = "Caf\xe9"\n', ":2:12: byte 0xE9 is not UTF-8 (the file looks like Latin-1"),
    ],
)
def test_a_wrong_value_names_the_file_and_the_key(tmp_path: Path, toml: str | bytes, expected: str) -> None:
    message = load(tmp_path, toml)
    assert message.startswith(str(tmp_path / "settings.toml")), message
    assert expected in message, message


def test_a_value_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    message = load(tmp_path, "", OUTREACH_DELIVERY__QUIET_HOURS="9")
    assert message.startswith("environment OUTREACH_DELIVERY__QUIET_HOURS: [delivery.quiet_hours] '9' is not")


def test_a_list_in_the_environment_must_be_json(tmp_path: Path) -> None:
    message = load(tmp_path, "", OUTREACH_DELIVERY__LOCALES="en")
    assert "written as JSON" in message and "OUTREACH_DELIVERY__LOCALES" in message


def test_a_malformed_database_url_is_shown_without_its_password(tmp_path: Path) -> None:
    message = load(tmp_path, "", OUTREACH_DATABASE__URL="postgresql://bob:hunter2@db:notaport/x")
    assert "postgresql://bob:***@db:notaport/x is not valid" in message
    assert "hunter2" not in message


def test_a_short_lease_is_fine_with_short_timeouts(tmp_path: Path) -> None:
    assert (
        load(tmp_path, "[daemon]\nlease_seconds = 1.5\n[sendgrid]\ntimeout = 0.7\n[twilio]\ntimeout = 0.7\n")
        == ""
    )


def test_the_shipped_settings_load(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "settings.toml"
    assert load(tmp_path, shipped.read_bytes()) == ""
