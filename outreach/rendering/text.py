"""The plain-text part of an email, derived from its HTML when no email.LOCALE.txt is written.

html2text (and similar converters) write Markdown: `# Title`, `[text](url)`, `1\\.` escapes. A
customer's mail client shows the text part as it is, so this writes what a person would type:
paragraphs separated by blank lines, `- ` list items, and links as `text (url)`.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIPPED = frozenset({"head", "title", "style", "script", "template", "noscript"})
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
_PARAGRAPH = frozenset(
    {
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "table",
        "blockquote",
        "pre",
        "address",
        "dl",
        "figure",
        "hr",
    }
)
_LINE = frozenset(
    {
        "div",
        "li",
        "tr",
        "br",
        "section",
        "article",
        "header",
        "footer",
        "main",
        "nav",
        "center",
        "dt",
        "dd",
        "figcaption",
        "body",
    }
)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none", re.IGNORECASE)


class _TextWriter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip_depth = 0
        self._skip_stack: list[str] = []
        self._lists: list[list[int]] = []  # per open list: [next number] for <ol>, [] for <ul>
        self._links: list[tuple[str, int]] = []
        self._pre = 0
        self._cells_in_row = 0
        self._started = False

    # -- output ------------------------------------------------------------------------------

    def _ends_with_space(self) -> bool:
        return not self.out or self.out[-1].endswith((" ", "\n"))

    def _break(self, newlines: int) -> None:
        if not self._started:
            return
        # Spaces before a line break are invisible noise; keep the larger of the two breaks.
        existing = 0
        while self.out:
            chunk = self.out[-1]
            kept = chunk.rstrip(" \n")
            existing += chunk[len(kept) :].count("\n")
            if kept:
                self.out[-1] = kept
                break
            self.out.pop()
        self.out.append("\n" * max(newlines, existing))

    def _hidden(self, attrs: dict[str, str | None]) -> bool:
        return (
            "hidden" in attrs
            or (attrs.get("aria-hidden") or "").lower() == "true"
            or bool(_HIDDEN_STYLE.search(attrs.get("style") or ""))
        )

    # -- parser callbacks --------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = dict(attrs_list)
        if self._skip_depth:
            if tag not in _VOID:
                self._skip_depth += 1
            return
        if tag in _SKIPPED or self._hidden(attrs):
            if tag not in _VOID:
                self._skip_depth = 1
            return
        if tag in ("ul", "ol") and self._lists:
            self._break(1)  # a list inside a list item continues it
        elif tag in _PARAGRAPH:
            self._break(2)
        elif tag in _LINE:
            self._break(1)
        if tag in ("ul", "ol"):
            self._lists.append([1] if tag == "ol" else [])
        elif tag == "li":
            marker = "- "
            if self._lists and self._lists[-1]:
                marker = f"{self._lists[-1][0]}. "
                self._lists[-1][0] += 1
            self.out.append("  " * max(len(self._lists) - 1, 0) + marker)
        elif tag == "a":
            self._links.append((attrs.get("href") or "", len(self.out)))
        elif tag == "img":
            alt = (attrs.get("alt") or "").strip()
            if alt:
                self.handle_data(alt)
        elif tag == "hr":
            self.out.append("—" * 20)
            self._break(2)
        elif tag == "pre":
            self._pre += 1
        elif tag == "tr":
            self._cells_in_row = 0
        elif tag in ("td", "th"):
            if self._cells_in_row:
                self.out.append("  ")
            self._cells_in_row += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if self._skip_depth:
            if tag not in _VOID:
                self._skip_depth -= 1
            return
        if tag in ("ul", "ol") and self._lists:
            self._lists.pop()
            self._break(1 if self._lists else 2)
            return
        if tag == "a" and self._links:
            href, start = self._links.pop()
            self._end_link(href, start)
        elif tag == "pre":
            self._pre = max(self._pre - 1, 0)
        if tag in _PARAGRAPH:
            self._break(2)
        elif tag in _LINE:
            self._break(1)

    def _end_link(self, href: str, start: int) -> None:
        label = "".join(self.out[min(start, len(self.out)) :]).strip()
        target = href.strip()
        for scheme in ("mailto:", "tel:"):
            if target.lower().startswith(scheme):
                target = target[len(scheme) :].split("?")[0]
        if not target or target.startswith("#"):
            return
        plain = re.sub(r"[\s\u2066-\u2069]", "", label)
        if target.replace(" ", "") in plain or plain.rstrip("/") == target.rstrip("/"):
            return
        self.out.append(f" ({target})" if label else target)

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre:
            self.out.append(data)
            self._started = self._started or bool(data.strip())
            return
        text = re.sub(r"[ \t\r\n\f]+", " ", data)
        if self._ends_with_space():
            text = text.lstrip(" ")
        if text:
            self.out.append(text)
            self._started = self._started or bool(text.strip())


def html_to_text(html: str) -> str:
    """The text a person would write for HTML: paragraphs, `- ` items, links as `text (url)`."""
    writer = _TextWriter()
    writer.feed(html)
    writer.close()
    lines = [line.rstrip() for line in "".join(writer.out).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
