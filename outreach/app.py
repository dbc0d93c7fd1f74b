"""The composition root: settings → database engine, rules, templates, channels.

The CLI and the daemon build one `App` and ask it for what they need; nothing here decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy.engine import Engine

from outreach.durations import parse_duration
from outreach.errors import Problem
from outreach.rules.loader import RuleSet, check_rules, load_rules
from outreach.settings import Settings
from outreach.state.db import make_engine, require_current_schema


@dataclass
class App:
    settings: Settings
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def rules_dir(self) -> Path:
        return self.settings.path(self.settings.paths.rules)

    @property
    def templates_dir(self) -> Path:
        return self.settings.path(self.settings.paths.templates)

    @cached_property
    def engine(self) -> Engine:
        if self._engine is not None:  # given by the caller (a scratch database shared by rule tests)
            return self._engine
        engine = make_engine(self.settings.database_url, busy_timeout=self.settings.database.busy_timeout)
        require_current_schema(engine)
        return engine

    def _template_exists(self, name: str) -> bool:
        return (self.templates_dir / name).is_dir()

    def check_rules(self) -> tuple[RuleSet, list[Problem]]:
        """The valid rules and every problem in the rules files."""
        return check_rules(
            self.rules_dir,
            default_every=parse_duration(self.settings.delivery.default_every),
            template_exists=self._template_exists,
        )

    def load_rules(self) -> RuleSet:
        """The rules; RulesError listing every problem if any."""
        return load_rules(
            self.rules_dir,
            default_every=parse_duration(self.settings.delivery.default_every),
            template_exists=self._template_exists,
        )

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
