"""Fixtures for rendering tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from outreach.settings import Settings
from tests.unit.rendering.builders import settings_for, write_templates


@pytest.fixture
def templates(tmp_path: Path) -> Callable[..., Settings]:
    """Write FILES under tmp_path/templates and return settings that read them."""

    def make(files: Mapping[str, str], **delivery: Any) -> Settings:
        write_templates(tmp_path / "templates", files)
        return settings_for(tmp_path, **delivery)

    return make
