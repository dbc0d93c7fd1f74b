"""Templates marketers can trust: sandboxed rendering, locale-aware formatting, SMS segments, lint.

Renderer(settings).render(template=…, channel=…, customer=…, about=…, entity=…, rule=…, now=…)
    → RenderedMessage, or RenderError saying which template, line and value failed
lint_templates(settings, rules) → [Problem]   (for `outreach check`)
"""

from outreach.rendering.environment import Limits
from outreach.rendering.lint import lint_templates
from outreach.rendering.renderer import RenderedMessage, Renderer, RuleInfo
from outreach.rendering.sms import Segments, count_segments

__all__ = [
    "Limits",
    "RenderedMessage",
    "Renderer",
    "RuleInfo",
    "Segments",
    "count_segments",
    "lint_templates",
]
