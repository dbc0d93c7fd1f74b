"""settings.toml + `OUTREACH_SECTION__KEY` environment variables → one typed Settings object.

Secrets (provider credentials, webhook keys) are read from the environment only, never from
the file, so a settings.toml can be committed and reviewed like the rules.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from outreach.durations import parse_duration
from outreach.errors import ConfigError

SETTINGS_ENV = "OUTREACH_SETTINGS"
DEFAULT_FILE = "settings.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: str = "sqlite:///var/outreach.db"


class PathSettings(_Section):
    rules: str = "rules"
    templates: str = "templates"
    outbox: str = "var/outbox.jsonl"


class DeliverySettings(_Section):
    mode: Literal["outbox", "console", "live"] = "outbox"
    default_locale: str = "en"
    locales: tuple[str, ...] = ("en", "ar")
    quiet_hours: str = "21:00-09:00"
    max_per_day: int = Field(default=1, ge=0)
    max_per_week: int = Field(default=3, ge=0)
    default_every: str = "15m"
    sms_max_segments: int = Field(default=4, ge=1)
    concurrency: int = Field(default=8, ge=1, le=64)
    # A send whose outcome is unknown (the process died mid-request) is not resent unless this
    # is true: then a customer may get a message twice, but never none.
    at_least_once: bool = False

    @field_validator("default_every")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class CompanySettings(_Section):
    name: str = "Example Store"
    support_phone: str = ""
    support_url: str = ""
    support_email: str = ""
    unsubscribe_url: str = "https://example.com/unsubscribe/{customer_id}"


class SendGridSettings(_Section):
    from_email: str = "care@example.com"
    from_name: str = ""
    host: str = "https://api.sendgrid.com"
    unsubscribe_group_id: int | None = None
    timeout: float = Field(default=10.0, gt=0)
    # Added after the rule name on every email; SendGrid allows 10 categories per message.
    categories: tuple[str, ...] = Field(default=("outreach",), max_length=9)


class TwilioSettings(_Section):
    messaging_service_sid: str = ""
    from_number: str = ""
    base_url: str = "https://api.twilio.com"
    timeout: float = Field(default=10.0, gt=0)
    # Twilio's Smart Encoding (`SmartEncoded`): curly quotes, dashes, no-break spaces… are sent
    # as their GSM-7 look-alikes, and segments are counted the same way.
    smart_encoding: bool = False


class EscalationSettings(_Section):
    webhook_url: str = ""
    timeout: float = Field(default=5.0, gt=0)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str = ""


class FeedbackSettings(_Section):
    """What inbound feedback understands beyond the built-in keywords and windows."""

    # Added to the built-in English, Arabic and French words (outreach.feedback.OPT_OUT_KEYWORDS).
    opt_out_keywords: tuple[str, ...] = ()
    opt_in_keywords: tuple[str, ...] = ()
    # A signed SendGrid request older than this is refused as a replay. SendGrid retries an
    # unanswered POST "at increasing intervals for up to 24 hours after the event occurs"
    # (Event Webhook troubleshooting guide), so the default leaves a few minutes beyond that.
    sendgrid_event_max_age: str = "24h10m"

    @field_validator("sendgrid_event_max_age")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class StudioSettings(_Section):
    """`outreach studio` and `outreach send-test`: where the page is served, who may get tests."""

    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    # The only addresses a test may go to: emails and phone numbers in E.164 (+447700900123).
    test_recipients: tuple[str, ...] = ()

    @field_validator("test_recipients")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            text = address.strip()
            if not ("@" in text.strip("@") or (text.startswith("+") and text[1:].isdigit())):
                raise ValueError(
                    f"{address!r} is neither an email address nor a phone number in E.164 "
                    "(e.g. marketing@example.com, +447700900123)"
                )
        return tuple(a.strip() for a in value)


class DaemonSettings(_Section):
    """`outreach run`: how often it dispatches and looks for edits, how long it waits on SIGTERM."""

    dispatch_interval: float = Field(default=1.0, gt=0)
    reload_interval: float = Field(default=5.0, gt=0)
    grace_seconds: float = Field(default=30.0, ge=0)
    # APScheduler's default of 1 s drops a tick that starts late (a busy process, a slow
    # database); a late tick is still worth running, a tick later than this is coalesced away.
    misfire_grace_seconds: int = Field(default=300, ge=1)
    # How long a claimed contact belongs to its worker; past it, a vanished worker's contacts
    # are recovered (claimed → pending, sending → unknown). Longer than any send takes.
    lease_seconds: float = Field(default=300.0, gt=0)
    # /healthz turns unhealthy, naming the rule, after this many failed ticks of a rule in a row,
    # or when edits of the rules or templates have been rejected for longer than this.
    unhealthy_after_failures: int = Field(default=3, ge=1)
    unhealthy_after_rejected_reload_seconds: float = Field(default=300.0, gt=0)


class Settings(BaseSettings):
    """Everything outreach can be told; `base_dir` anchors the relative paths."""

    model_config = SettingsConfigDict(
        env_prefix="OUTREACH_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    database: DatabaseSettings = DatabaseSettings()
    paths: PathSettings = PathSettings()
    delivery: DeliverySettings = DeliverySettings()
    company: CompanySettings = CompanySettings()
    sendgrid: SendGridSettings = SendGridSettings()
    twilio: TwilioSettings = TwilioSettings()
    server: ServerSettings = ServerSettings()
    escalation: EscalationSettings = EscalationSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    daemon: DaemonSettings = DaemonSettings()
    studio: StudioSettings = StudioSettings()
    base_dir: Path = Path(".")

    _toml_file: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)

    def path(self, relative: str) -> Path:
        """A settings path made absolute against the folder of settings.toml."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else (self.base_dir / candidate)

    @property
    def database_url(self) -> str:
        """The database URL, with a relative SQLite file anchored like the other paths."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix) :]))
        return url


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read settings from PATH (or $OUTREACH_SETTINGS, or ./settings.toml if present) and the environment."""
    explicit = path or os.environ.get(SETTINGS_ENV)
    toml_file: Path | None
    if explicit:
        toml_file = Path(explicit)
        if not toml_file.is_file():
            # pydantic-settings would silently ignore a missing file; a typo must not run on defaults.
            raise ConfigError(f"{toml_file}: settings file not found")
    else:
        toml_file = Path(DEFAULT_FILE) if Path(DEFAULT_FILE).is_file() else None
    base_dir = (toml_file.parent if toml_file else Path(".")).resolve()
    Settings._toml_file = toml_file
    try:
        return Settings(base_dir=base_dir, **overrides)
    except ValidationError as exc:
        where = str(toml_file) if toml_file else "settings"
        lines = [f"{where}: [{'.'.join(str(p) for p in err['loc'])}] {err['msg']}" for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    finally:
        Settings._toml_file = None
