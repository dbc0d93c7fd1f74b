"""outreach: proactive outreach rules engine.

The Python API is `outreach.Outreach` (outreach/api.py); it and its companions are imported on
first use, so `import outreach` (and so every `outreach` command) does not pay for SQLAlchemy,
the rule compiler and Jinja2 until they are needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from outreach.api import (
        IngestError,
        InputError,
        Outreach,
        OutreachError,
        Problem,
        RulesError,
        Settings,
        configure_logging,
        load_settings,
    )

__all__ = [
    "IngestError",
    "InputError",
    "Outreach",
    "OutreachError",
    "Problem",
    "RulesError",
    "Settings",
    "__version__",
    "configure_logging",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    # PEP 562: the API is imported when first asked for, not with the package.
    if name in __all__:
        from outreach import api

        return getattr(api, name)
    raise AttributeError(f"module 'outreach' has no attribute {name!r}")
