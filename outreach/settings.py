"""settings.toml + `OUTREACH_SECTION__KEY` environment variables → one typed Settings object.

Secrets (provider credentials, webhook keys) are read from the environment only, never from
the file, so a settings.toml can be committed and reviewed like the rules.

Every value is checked when the settings load — quiet hours, locales, limits, durations,
URLs, timeouts, and that `daemon.lease_seconds` outlasts a send — and a mistake is reported
with the file (or the environment variable) and the key, never found later by a tick.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from outreach import encoding, locales
from outreach.durations import parse_duration
from outreach.errors import ConfigError

SETTINGS_ENV = "OUTREACH_SETTINGS"
DEFAULT_FILE = "settings.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Seconds, as settings give them: finite and positive, at most a day.
Seconds = Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)]
# A count a limit is compared with (the ledger's counts are SQL integers).
Count = Annotated[int, Field(ge=0, le=1_000_000)]


def _http_url(value: str, *, empty_ok: bool = False) -> str:
    if empty_ok and not value:
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL, e.g. https://example.com")
    return value


class DatabaseSettings(_Section):
    url: str = "sqlite:///var/outreach.db"
    # How long a command waits for another process's lock on a SQLite file before it says so.
    busy_timeout: float = Field(default=10.0, ge=0, le=3600, allow_inf_nan=False)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from outreach.database_url import check_url  # imports SQLAlchemy: only when settings load

        try:
            return check_url(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class PathSettings(_Section):
    rules: str = "rules"
    templates: str = "templates"
    outbox: str = "var/outbox.jsonl"


class DeliverySettings(_Section):
    mode: Literal["outbox", "console", "live"] = "outbox"
    default_locale: str = "en"
    locales: tuple[str, ...] = Field(default=("en", "ar"), min_length=1)
    quiet_hours: str = "21:00-09:00"
    max_per_day: Count = 1
    max_per_week: Count = 3
    default_every: str = "15m"
    sms_max_segments: int = Field(default=4, ge=1, le=100)
    concurrency: int = Field(default=8, ge=1, le=64)
    # A send whose outcome is unknown (the process died mid-request) is not resent unless this
    # is true: then a customer may get a message twice, but never none.
    at_least_once: bool = False

    @field_validator("default_every")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value).total_seconds() <= 0:
            raise ValueError("must be longer than 0s, e.g. 15m")
        return value

    @field_validator("default_locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        return locales.normalise(value)

    @field_validator("locales")
    @classmethod
    def _locales(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = tuple(locales.normalise(tag) for tag in value)
        if len(set(known)) != len(known):
            raise ValueError(f"{list(value)} lists a locale twice")
        return known

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        from outreach.quiet_hours import OFF, QuietHours

        if value != OFF:
            QuietHours.parse(value)
        return value

    @model_validator(mode="after")
    def _default_is_listed(self) -> DeliverySettings:
        if self.default_locale not in self.locales:
            raise ValueError(
                f"delivery.default_locale {self.default_locale!r} is not in delivery.locales "
                f"{list(self.locales)}: every customer falls back to it, so add it there "
                "(check then makes sure each template exists in it)"
            )
        return self


class CompanySettings(_Section):
    name: str = "Example Store"
    support_phone: str = ""
    support_url: str = ""
    support_email: str = ""
    unsubscribe_url: str = "https://example.com/unsubscribe/{customer_id}"

    @field_validator("unsubscribe_url")
    @classmethod
    def _unsubscribe(cls, value: str) -> str:
        try:
            filled = value.format(customer_id="c-1")
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"{value!r} cannot be filled in ({type(exc).__name__}: {exc}): the only placeholder is "
                "{customer_id}, e.g. https://example.com/unsubscribe/{customer_id}"
            ) from None
        _http_url(filled)
        return value


class SendGridSettings(_Section):
    from_email: str = "care@example.com"
    from_name: str = ""
    host: str = "https://api.sendgrid.com"
    unsubscribe_group_id: int | None = Field(default=None, ge=0, le=2**31 - 1)
    timeout: Seconds = 10.0
    # Added after the rule name on every email; SendGrid allows 10 categories per message.
    categories: tuple[str, ...] = Field(default=("outreach",), max_length=9)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _http_url(value)


class TwilioSettings(_Section):
    messaging_service_sid: str = ""
    from_number: str = ""
    base_url: str = "https://api.twilio.com"
    timeout: Seconds = 10.0
    # Twilio's Smart Encoding (`SmartEncoded`): curly quotes, dashes, no-break spaces… are sent
    # as their GSM-7 look-alikes, and segments are counted the same way.
    smart_encoding: bool = False

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return _http_url(value)


class EscalationSettings(_Section):
    webhook_url: str = ""
    timeout: Seconds = 5.0

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: str) -> str:
        return _http_url(value, empty_ok=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str = ""

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return _http_url(value, empty_ok=True)


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

    dispatch_interval: Seconds = 1.0
    reload_interval: Seconds = 5.0
    grace_seconds: float = Field(default=30.0, ge=0, le=86400, allow_inf_nan=False)
    # APScheduler's default of 1 s drops a tick that starts late (a busy process, a slow
    # database); a late tick is still worth running, a tick later than this is coalesced away.
    misfire_grace_seconds: int = Field(default=300, ge=1, le=86400)
    # How long a claimed contact belongs to its worker; past it, a vanished worker's contacts
    # are recovered (claimed → pending, sending → unknown). Longer than any send takes.
    lease_seconds: Seconds = 300.0
    # /healthz turns unhealthy, naming the rule, after this many failed ticks of a rule in a row,
    # or when edits of the rules or templates have been rejected for longer than this.
    unhealthy_after_failures: int = Field(default=3, ge=1)
    unhealthy_after_rejected_reload_seconds: Seconds = 300.0


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

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Settings:
        # A chunk of contacts is marked `sending` before its requests leave and recorded once
        # the next chunk's requests are back too (outreach.delivery.dispatch pipelines them):
        # up to two provider timeouts. A shorter lease lets another worker take over (and mark
        # unknown) contacts whose requests are still on the wire.
        slowest = max(
            ("sendgrid.timeout", self.sendgrid.timeout),
            ("twilio.timeout", self.twilio.timeout),
            key=lambda pair: pair[1],
        )
        if self.daemon.lease_seconds <= 2 * slowest[1]:
            raise ValueError(
                f"daemon.lease_seconds ({self.daemon.lease_seconds:g}) must be longer than twice the "
                f"longest provider timeout ({slowest[0]} = {slowest[1]:g}): a contact stays `sending` "
                "through its own request and the next batch's, and a shorter lease hands it to "
                "another worker while it is still on the wire"
            )
        return self

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
    if toml_file is not None:
        _check_toml(toml_file)
    base_dir = (toml_file.parent if toml_file else Path(".")).resolve()
    Settings._toml_file = toml_file
    try:
        return Settings(base_dir=base_dir, **overrides)
    except ValidationError as exc:
        raise ConfigError("\n".join(_located(err, toml_file) for err in exc.errors())) from None
    except ValueError as exc:  # pydantic-settings cannot parse an environment value (e.g. a list)
        raise ConfigError(
            f"environment: {exc}: lists and tables in environment variables are written as JSON, "
            """e.g. OUTREACH_DELIVERY__LOCALES='["en", "ar"]'"""
        ) from None
    finally:
        Settings._toml_file = None


def _check_toml(path: Path) -> None:
    """ConfigError at FILE:LINE:COL if PATH is not UTF-8 TOML (pydantic-settings would raise raw)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the settings file: {exc.strerror}") from None
    wide = encoding.wide_encoding(data[:4])
    if wide is not None:
        raise ConfigError(f"{path}:1:1: {encoding.wide_message(wide, 'the settings file')}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        found = encoding.not_utf8(data, exc, "the settings file")
        raise ConfigError(f"{path}:{found.line}:{found.col}: {found.message}") from None
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = message.rfind(" (at line ")
        if at != -1 and message.endswith(")"):
            line, _, col = message[at + len(" (at line ") : -1].partition(", column ")
            raise ConfigError(f"{path}:{line}:{col}: not valid TOML: {message[:at]}") from None
        raise ConfigError(f"{path}: not valid TOML: {message}") from None


def _located(error: Any, toml_file: Path | None) -> str:
    """One validation error as `FILE: [section.key] message`, naming the environment variable if it set the key."""
    loc = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    if loc:
        variable = "OUTREACH_" + "__".join(loc[:2]).upper()
        where = f"environment {variable}" if variable in os.environ else str(toml_file or "settings")
        key = ".".join(loc)
        return f"{where}: {message}" if message.startswith(key + ".") else f"{where}: [{key}] {message}"
    return f"{toml_file or 'settings'}: {message}"
