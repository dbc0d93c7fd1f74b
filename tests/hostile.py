"""A corpus of hostile input: broken rules files and broken template edits, each with what it must say.

Every case is bytes (encodings and control characters are part of the corpus) and the text a
located problem about it must contain. Used by the loader's tests, the gate's tests (`check`
and `check_all` refuse every case alike) and the fuzz tests as seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BASE = b"""rules:
  - name: a
    about: order
    channels: [email]
    template: late_delivery
"""
GOOD_WHEN = b"    when: order.total > 1\n"


@dataclass(frozen=True)
class RulesCase:
    """A rules file and the problem it must be reported with (LINE None: anywhere in the file)."""

    name: str
    content: bytes
    expect: str
    line: int | None = None


def _rule(*lines: str, when: bytes = GOOD_WHEN) -> bytes:
    return BASE + when + "".join(f"    {line}\n" for line in lines).encode()


def _bomb(levels: int = 9) -> bytes:
    parts = [b'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        parts.append(f"a{level}: &a{level} [{','.join([f'*a{level - 1}'] * 9)}]".encode())
    return b"\n".join(parts) + f"\nrules: *a{levels - 1}\n".encode()


def _alias_chain(length: int = 200) -> bytes:
    parts = [b"x0: &x0 [1]"] + [f"x{n}: &x{n} [*x{n - 1}]".encode() for n in range(1, length)]
    return b"\n".join(parts) + f"\nrules: *x{length - 1}\n".encode()


RULES_CASES: tuple[RulesCase, ...] = (
    RulesCase(
        "expires shorter than delay",
        _rule("delay: 2h", "expires: 1h"),
        "'expires' (1h) must be longer than 'delay' (2h)",
        8,
    ),
    RulesCase("expires equal to delay", _rule("delay: 2h", "expires: 2h"), "must be longer than 'delay'", 8),
    RulesCase(
        "a 30-digit number in when",
        BASE + b"    when: order.total > 999999999999999999999999999999\n",
        "is too large: numbers in a condition are at most 9,223,372,036,854,775,807",
        6,
    ),
    RulesCase(
        "a number with 5,000 digits",
        BASE + b"    when: order.total > " + b"7" * 5000 + b"\n",
        "is too large",
        6,
    ),
    RulesCase(
        "every of 99999999999999w", _rule("every: 99999999999999w"), "is too long: a duration is at most", 7
    ),
    RulesCase("a huge expires", _rule("expires: 999999999d"), "is too long: a duration is at most", 7),
    RulesCase("a duration of 5,000 digits", _rule("cooldown: " + "9" * 5000 + "d"), "is too long", 7),
    RulesCase("every of 0s", _rule("every: 0s"), "'every' must be longer than 0s", 7),
    RulesCase(
        "name null",
        b"rules:\n  - name: null\n    about: order\n    when: order.total > 1\n    channels: [email]\n    template: late_delivery\n",
        "'name' must be text",
        2,
    ),
    RulesCase(
        "name a list",
        b"rules:\n  - name: [a, b]\n    about: order\n    when: order.total > 1\n    channels: [email]\n    template: late_delivery\n",
        "'name' must be text",
        2,
    ),
    RulesCase("rules twice", _rule() + b"rules: []\n", "`rules:` is given twice", 7),
    RulesCase(
        "channels nested in a list",
        b"rules:\n  - name: a\n    about: order\n    when: order.total > 1\n    channels: [[sms]]\n    template: late_delivery\n",
        "each channel must be a name, email or sms",
        5,
    ),
    RulesCase(
        "template a path out of the folder",
        b"rules:\n  - name: a\n    about: order\n    when: order.total > 1\n    channels: [email]\n    template: ../../../etc\n",
        "must be the name of a folder under templates/",
        6,
    ),
    RulesCase(
        "a python tag at the top",
        b'rules: !!python/object/apply:os.system ["echo hi"]\n',
        "the YAML tag '!!python/object/apply:os.system' is not allowed",
        1,
    ),
    RulesCase(
        "a python tag in a field",
        _rule('description: !!python/object/apply:os.system ["echo hi"]'),
        "is not allowed",
        7,
    ),
    RulesCase("a local tag", _rule("description: !secret x"), "the YAML tag '!secret' is not allowed", 7),
    RulesCase("a control character", _rule("description: a\x01b"), "character U+0001 is not allowed", 7),
    RulesCase("an escape character", _rule("description: \x1b[31mred"), "character U+001B is not allowed", 7),
    RulesCase("a Latin-1 byte", _rule().replace(b"name: a", b"name: caf\xe9"), "byte 0xE9 is not UTF-8", 2),
    RulesCase(
        "invalid UTF-8", _rule().replace(b"about: order", b"about: \xc3\x28"), "byte 0xC3 is not UTF-8", 3
    ),
    RulesCase("UTF-16", "\ufeff".encode("utf-16-le") + _rule().decode().encode("utf-16-le"), "is UTF-16", 1),
    RulesCase("UTF-16 without a byte order mark", _rule().decode().encode("utf-16-le"), "holds NUL bytes", 1),
    RulesCase("billion laughs", _bomb(), "aliases make this document larger than", None),
    RulesCase("a chain of aliases", _alias_chain(), "levels deep once aliases are expanded", None),
    RulesCase(
        "an alias inside itself",
        b"rules: &a [*a]\n",
        "an alias refers to a list or mapping that contains it",
        1,
    ),
    RulesCase("deep nesting", b"rules: " + b"[" * 5000 + b"\n", "nested more than 64 levels deep", 1),
    RulesCase("an unclosed list", b"rules: [\n", "not valid YAML", None),
    RulesCase("two documents", _rule() + b"---\n" + _rule(), "not valid YAML", None),
    RulesCase("an empty file", b"", "the file is empty", 1),
    RulesCase("rules null", b"rules:\n", "`rules:` must be a list", 1),
    RulesCase("a rule that is a number", b"rules: [5]\n", "each rule must be a mapping", 1),
    RulesCase("a key that is a list", _rule("? [a, b]", ": c"), "a key must be a plain name", 7),
    RulesCase("a key that is a number", _rule("1: x"), "a key must be a plain name", 7),
    RulesCase(
        "a field given twice", _rule("priority: 1", "priority: 2"), "field 'priority' is given twice", 8
    ),
    RulesCase("an int tag on text", _rule("priority: !!int abc"), "cannot read this value", 7),
    RulesCase("a thirteenth month", _rule("description: 2026-13-45"), "cannot read this value", 7),
    RulesCase(
        "priority past the ledger's column",
        _rule("priority: 99999999999"),
        "'priority' must be a whole number from -2,147,483,648 to 2,147,483,647",
        7,
    ),
    RulesCase("priority a fraction", _rule("priority: 1.5"), "'priority' must be a whole number", 7),
    RulesCase("holdout not a number", _rule("holdout: .nan"), "'holdout' must be a percentage", 7),
    RulesCase("description a list", _rule("description: [a]"), "'description' must be text", 7),
    RulesCase("escalate a string", _rule('escalate: "yes"'), "'escalate' must be true or false", 7),
    RulesCase("enabled a number", _rule("enabled: 1"), "'enabled' must be true or false", 7),
    RulesCase(
        "quiet hours at 24:00",
        _rule('quiet_hours: "24:00-01:00"'),
        "quiet_hours '24:00-01:00' must look like",
        7,
    ),
    RulesCase("every a date", _rule("every: 2026-01-01"), "'every' must be a duration", 7),
    RulesCase("when a number", BASE + b"    when: 5\n", "'when' must be an expression", 6),
    RulesCase(
        "a NUL escape in a when string",
        BASE + b'    when: order.carrier == "\\u0000"\n',
        "this string holds a NUL character",
        6,
    ),
    RulesCase(
        "a lone surrogate in a when string",
        BASE + b"    when: 'order.carrier == \"\\ud800\"'\n",
        "this string holds a lone surrogate",
        6,
    ),
    RulesCase(
        "3,000 nested not",
        BASE + b"    when: " + b"not " * 3000 + b"order.total > 1\n",
        "the condition nests more than 50 levels deep",
        6,
    ),
    RulesCase(
        "a when of 25,000 characters",
        BASE + b"    when: " + b" and ".join([b"order.total > 1"] * 1300) + b"\n",
        "a condition may be at most 20,000",
        6,
    ),
    RulesCase(
        "a whole-number overflow",
        b"rules:\n  - name: a\n    about: survey\n    when: survey.score * 9000000000000000000 > 1\n"
        b"    channels: [email]\n    template: detractor_apology\n",
        "this arithmetic can exceed 9,223,372,036,854,775,807",
        4,
    ),
    RulesCase(
        "a time moved by two centuries",
        BASE + b"    when: order.placed_at + 36525d + 36525d > now()\n",
        "the durations here add up to more than 36525d (100 years)",
        6,
    ),
    RulesCase("a broken goal", _rule("goal: order.total >"), "goal: the expression ends too early", 7),
    RulesCase(
        "larger than a mebibyte", _rule("description: " + "x" * (1024 * 1024)), "larger than 1,024 KiB", None
    ),
)


@dataclass(frozen=True)
class TemplateCase:
    """An edit of one bundled template file (None: delete it) and the problem it must be reported with."""

    name: str
    path: str  # under templates/
    content: bytes | None
    expect: str


def bundled(path: str) -> bytes:
    return (REPO / "templates" / path).read_bytes()


TEMPLATE_CASES: tuple[TemplateCase, ...] = (
    TemplateCase(
        "an unknown attribute",
        "late_delivery/sms.en.txt",
        b"Your order {{ order.idd }} is late. {{ company.support_url }}\n",
        "idd",
    ),
    TemplateCase(
        "a syntax error",
        "late_delivery/sms.en.txt",
        b"{% if %}late{% endif %}\n",
        "late_delivery/sms.en.txt:1",
    ),
    TemplateCase(
        "an unknown filter",
        "late_delivery/sms.en.txt",
        b"{{ order.total | monney }} {{ company.support_url }}\n",
        "unknown filter 'monney'",
    ),
    TemplateCase("a missing locale", "late_delivery/sms.ar.txt", None, "missing: the rule sends sms"),
    TemplateCase(
        "brackets 3,000 deep",
        "late_delivery/sms.en.txt",
        b"{{ " + b"(" * 3000 + b"1" + b")" * 3000 + b" }}\n",
        "the template nests too deeply to compile",
    ),
    TemplateCase(
        "blocks 500 deep",
        "late_delivery/sms.en.txt",
        b"{% if x %}" * 500 + b"a" + b"{% endif %}" * 500,
        "the template nests too deeply to compile",
    ),
    TemplateCase(
        "a Latin-1 byte", "late_delivery/sms.en.txt", b"Caf\xe9 {{ order.id }}\n", "byte 0xE9 is not UTF-8"
    ),
    TemplateCase("a NUL byte", "late_delivery/sms.en.txt", b"late\x00 {{ order.id }}\n", "holds NUL bytes"),
    TemplateCase(
        "UTF-16", "late_delivery/sms.en.txt", "\ufeffHello {{ order.id }}\n".encode("utf-16-le"), "is UTF-16"
    ),
    TemplateCase(
        "no front matter",
        "late_delivery/email.en.html",
        b"<p>{{ order.id }} {{ unsubscribe_url }}</p>\n",
        "email HTML must begin with front matter",
    ),
    TemplateCase(
        "front matter nested deeply",
        "late_delivery/email.en.html",
        b"---\nsubject: " + b"[" * 500 + b"\n---\n<p>x</p>\n",
        "nested more than 64 levels deep",
    ),
    TemplateCase(
        "front matter with a python tag",
        "late_delivery/email.en.html",
        b'---\nsubject: !!python/object/apply:os.system ["echo hi"]\n---\n<p>x</p>\n',
        "is not allowed",
    ),
    TemplateCase(
        "an SMS of eight segments",
        "late_delivery/sms.en.txt",
        b"{{ order.id }} " + b"late " * 250 + b"\n",
        "more than delivery.sms_max_segments",
    ),
)
