"""Write cases.jsonl: SMS texts with the encoding and segments Twilio's own calculator gives them.

The oracle is Twilio's segment calculator, npm `sms-segments-calculator` (github.com/TwilioDevEd/
message-segment-calculator). It is installed in a scratch folder outside the repository and run
with node; nothing of it is committed. To re-run (from the repository root):

    npm install --prefix /tmp/sms-oracle sms-segments-calculator@1.3.0
    .venv/bin/python tests/data/sms_segments/generate.py /tmp/sms-oracle

The texts: ASCII and GSM-7 extension characters, Arabic with its diacritics, emoji, skin tones,
flags, keycaps, family and other ZWJ emoji, combining accents, each placed on both sides of the
160/153 (GSM-7) and 70/67 (UCS-2) boundaries and their multiples; sentences with dates, times
and amounts as outreach's locale filters write them, with and without their no-break spaces made
plain; and characters Smart Encoding replaces, counted with it off and on.
tests/unit/rendering/test_sms_oracle.py checks that outreach gives the same answer for each.

One known difference: the calculator cuts clusters with grapheme-splitter 1.0.4 (Unicode 10's
rules), outreach with the `regex` module (Unicode's current rules). ZWJ emoji newer than Unicode
10 whose second part is not one of the old "glue after ZWJ" emoji — heart on fire ❤️‍🔥 — are two
characters to the calculator and one to outreach. They name the same code points as forcing UCS-2
and count the same segments on every case but the two where ❤️‍🔥 straddles the end of the first
segment of a 134-unit message: the calculator fills the segment with ❤️ and the joiner and bills
2, outreach moves the whole emoji on and bills 3 (test_sms_oracle.py lists them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from outreach.rendering.filters import (  # noqa: E402 - the repository is put on the path first
    Formatting,
    format_date,
    format_datetime,
    format_money,
    format_time,
)
from outreach.rendering.sms import opt_out_line, plain_spaces  # noqa: E402

Case = dict[str, Any]

ARABIC = "ب"
# (label, cluster): one character as a reader sees it; its UTF-16 length is its UCS-2 cost.
CLUSTERS = [
    ("latin letter outside GSM-7", "ç"),
    ("Arabic letter", ARABIC),
    ("Arabic letter + shadda", "بّ"),
    ("Arabic letter + fatha + shadda", "بَّ"),
    ("Arabic letter + shadda + kasra", "سِّ"),
    ("e + combining acute accent", "e\u0301"),
    ("emoji", "🙂"),
    ("emoji with skin tone", "👍🏽"),
    ("flag", "🇪🇬"),
    ("keycap", "1️⃣"),
    ("keycap #", "#️⃣"),
    ("family emoji", "👨‍👩‍👧‍👦"),
    ("couple with heart", "👩‍❤️‍👨"),
    ("rainbow flag", "🏳️‍🌈"),
    ("technologist", "🧑‍💻"),
    ("astronaut with skin tone", "🧑🏽‍🚀"),
    ("heart on fire", "❤️‍🔥"),
    ("curly apostrophe", "’"),
    ("narrow no-break space", "\u202f"),
]
GSM7_EXTENSION = "\f^{}\\[~]|€"


def utf16(text: str) -> int:
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def case(label: str, text: str, smart_encoding: bool = False) -> Case:
    return {"class": label, "smart_encoding": smart_encoding, "text": text}


def plain_lengths() -> list[Case]:
    lengths = [0, 1, 2, 70, 153, 154, 159, 160, 161, 162, 305, 306, 307, 459, 460]
    cases = [case("GSM-7: plain ASCII", "a" * n) for n in lengths]
    cases += [
        case("UCS-2: Arabic letters", ARABIC * n) for n in [1, 66, 67, 68, 69, 70, 71, 134, 135, 201, 202]
    ]
    cases.append(case("GSM-7: every basic character", "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./"))
    cases.append(case("GSM-7: CR LF line breaks", "Line one\r\nLine two\r\n" * 8))
    cases.append(case("GSM-7: CR LF across the 153 boundary", "a" * 152 + "\r\n" + "a" * 20))
    cases.append(case("UCS-2: CR LF across the 67 boundary", ARABIC * 66 + "\r\n" + ARABIC * 10))
    return cases


def extension_boundaries() -> list[Case]:
    cases = [case("GSM-7: extension characters", GSM7_EXTENSION * 4)]
    for char in GSM7_EXTENSION:
        label = f"GSM-7: extension character U+{ord(char):04X} at a boundary"
        for n in (151, 152, 153, 158, 159, 160, 304, 305, 306):
            cases.append(case(label, "a" * n + char + "a" * 12))
        cases.append(case(label, "a" * 158 + char))
    cases += [case("GSM-7: euro signs only", "€" * n) for n in (76, 77, 80, 81, 153, 154)]
    return cases


def cluster_boundaries() -> list[Case]:
    cases: list[Case] = []
    for label, cluster in CLUSTERS:
        units = utf16(cluster)
        for filler_name, filler in (("ASCII", "a"), ("Arabic", ARABIC)):
            name = f"UCS-2: {label} after {filler_name} text"
            # Alone: the message ends with the cluster on either side of 70 units.
            for n in range(68 - units, 72 - units):
                cases.append(case(name, filler * n + cluster))
            # Concatenated: the cluster straddles the end of the first and second segments.
            for boundary in (67, 134):
                for n in range(boundary - units - 1, boundary + 2):
                    cases.append(case(name, filler * n + cluster + filler * 9))
            # 134 units in all, a cluster across the end of the first segment: two segments of
            # 67 by code units alone, three when the cluster moves whole to the second.
            for n in range(68 - units, 67):
                cases.append(case(name + ", 134 units", filler * n + cluster + filler * (134 - n - units)))
        repeated = max(1, 72 // units)
        for count in (repeated - 1, repeated, repeated + 1, 2 * repeated):
            cases.append(case(f"UCS-2: {label} repeated", cluster * count))
    return cases


def locale_sentences() -> list[Case]:
    moment = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    london = Formatting.of("en", "Europe/London")
    paris = Formatting.of("fr", "Europe/Paris")
    berlin = Formatting.of("de", "Europe/Berlin")
    cairo = Formatting.of("ar", "Africa/Cairo")
    sentences = [
        (
            "English time",
            f"Souq Example: your parcel A-104217 arrives today at {format_time(moment, london)}.",
            "en",
        ),
        (
            "English date and time",
            f"Souq Example: we will call you on {format_datetime(moment, london)} about order A-104217.",
            "en",
        ),
        (
            "English money",
            f"Souq Example: your refund of {format_money(1249.5, 'GBP', london)} is on its way.",
            "en",
        ),
        (
            "French money",
            f"Souq Example : votre remboursement de {format_money(1249.5, 'EUR', paris)} est en route.",
            "fr",
        ),
        (
            "French date and time",
            f"Souq Example : livraison le {format_date(moment, paris, 'long')} à {format_time(moment, paris)}.",
            "fr",
        ),
        (
            "German money",
            f"Souq Example: Ihre Erstattung von {format_money(1249.5, 'EUR', berlin)} ist unterwegs.",
            "de",
        ),
        (
            "Arabic date and money",
            f"سوق: طلبك بقيمة {format_money(1249.5, 'EGP', cairo)} يصل في {format_date(moment, cairo, 'long')}.",
            "ar",
        ),
    ]
    cases: list[Case] = []
    for label, sentence, locale in sentences:
        for target in (150, 155, 157, 159, 160, 161, 165, 300, 306, 310):
            body = sentence + " Track it at https://track.example.com/A-104217"
            line = opt_out_line(locale)
            padding = max(0, target - len(body) - len(line) - 1)
            text = f"{body}{'.' * padding}\n{line}"
            cases.append(case(f"locale: {label}", text))
            fixed = plain_spaces(text)
            if fixed != text:
                cases.append(case(f"locale: {label}, spaces made plain", fixed))
    return cases


def smart_encoding() -> list[Case]:
    pieces = [
        ("curly quotes", "It’s “ready”"),
        ("dashes", "9–5 — open"),
        ("ellipsis", "Almost there…"),
        ("no-break spaces", "1\u202f249,50\u00a0€"),
        ("tab and zero-width space", "a\tb\u200bc"),
        ("guillemets and fractions", "«½ off»"),
        ("curly quote beside an emoji", "It’s here 🙂"),
        ("curly quote beside Arabic", "It’s " + ARABIC),
    ]
    cases: list[Case] = []
    for label, piece in pieces:
        for n in (0, 140, 145, 150, 153, 160, 300):
            text = piece + " " + "a" * n
            cases.append(case(f"smart encoding off: {label}", text, False))
            cases.append(case(f"smart encoding on: {label}", text, True))
    return cases


def oracle(cases: list[Case], scratch: Path) -> list[dict[str, Any]]:
    environment = {**os.environ, "NODE_PATH": str(scratch / "node_modules")}
    request = json.dumps([{"text": c["text"], "smart_encoding": c["smart_encoding"]} for c in cases])
    result = subprocess.run(
        ["node", str(HERE / "oracle.cjs")],
        input=request.encode("utf-8"),
        capture_output=True,
        env=environment,
        check=True,
    )
    answers: list[dict[str, Any]] = json.loads(result.stdout)
    return answers


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} SCRATCH_FOLDER (where `npm install --prefix` put the calculator)")
    scratch = Path(sys.argv[1])
    version = json.loads((scratch / "node_modules/sms-segments-calculator/package.json").read_text())[
        "version"
    ]
    cases = (
        plain_lengths()
        + extension_boundaries()
        + cluster_boundaries()
        + locale_sentences()
        + smart_encoding()
    )
    lines = []
    for item, answer in zip(cases, oracle(cases, scratch), strict=True):
        row = {**item, "encoding": answer["encoding"], "segments": answer["segments"], "ucs2": answer["ucs2"]}
        lines.append(json.dumps(row, ensure_ascii=False))
    header = {"oracle": f"sms-segments-calculator {version}", "cases": len(lines)}
    out = HERE / "cases.jsonl"
    out.write_text(json.dumps(header) + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} cases from sms-segments-calculator {version} → {out.relative_to(Path.cwd())}")


if __name__ == "__main__":
    main()
