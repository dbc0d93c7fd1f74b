"""Reading users' YAML files (rules, rule tests, template front matter) without trusting them.

PyYAML's SafeLoader already refuses to build Python objects, but it still raises on a tag it
does not know (`!!python/object/apply:os.system` is a ConstructorError), recurses once per
nesting level (a few thousand `[` end in RecursionError) and expands aliases without bound
(nine aliases of nine aliases — "billion laughs" — take gigabytes). Everything here turns such
input into located problems instead:

- the bytes are decoded as UTF-8, and a file in another encoding is named as such;
- characters YAML does not allow (control characters) are reported at their line and column;
- the file size, the nesting depth, the number of aliases and the size of the document once
  aliases are expanded are bounded;
- only the standard YAML tags are accepted (str, int, float, bool, null, map, seq, …).

`compose` returns the node tree (positions for every message); `construct` turns a node of
that tree into plain Python values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

from outreach import encoding

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_ALIASES = 1000
# Nodes once every alias is replaced by what it stands for: what constructing the document costs.
MAX_EXPANDED_NODES = 200_000

# The characters YAML 1.1 allows in a stream (the spec's c-printable), as PyYAML's reader checks.
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Located:
    """A problem with a YAML file at a 1-based line and column (None when it is the whole file)."""

    line: int | None
    col: int | None
    message: str


class YamlRefused(Exception):
    """The YAML text breaks one of the limits, or is not YAML; carries where and why."""

    def __init__(self, located: Located) -> None:
        super().__init__(located.message)
        self.located = located


def decode(data: bytes, what: str = "the file") -> str:
    """DATA as text: UTF-8, with or without a byte order mark; YamlRefused naming the encoding otherwise."""
    wide = encoding.wide_encoding(data[:4])
    if wide is not None:
        raise YamlRefused(Located(1, 1, encoding.wide_message(wide, what)))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        found = encoding.not_utf8(data, exc, what)
        raise YamlRefused(Located(found.line, found.col, found.message)) from None
    if "\x00" in text:
        line, col = position(text, text.index("\x00"))
        raise YamlRefused(
            Located(
                line, col, f"{what} holds NUL bytes: it looks like UTF-16 or a binary file; {encoding.ADVICE}"
            )
        )
    return text


def position(text: str, offset: int) -> tuple[int, int]:
    """The 1-based line and column of the character at OFFSET in TEXT."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def read_text(path: Path, what: str = "the file") -> str:
    """The text of the YAML file PATH; YamlRefused if it cannot be read, is too large or not UTF-8."""
    if path.is_dir():
        raise YamlRefused(Located(None, None, "is a folder, not a file: rename it or move it out of the way"))
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise YamlRefused(Located(None, None, f"cannot read {what}: {exc.strerror}")) from None
    if len(data) > MAX_BYTES:
        raise YamlRefused(
            Located(
                None, None, f"{what} is larger than {MAX_BYTES // 1024:,} KiB: split it into several files"
            )
        )
    return decode(data, what)


_STANDARD_TAGS = frozenset(tag for tag in yaml.SafeLoader.yaml_constructors if tag is not None)


class _BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """SafeLoader's composer with limits on depth, aliases and tags, checked as nodes are made."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise YamlRefused(_at(mark, f"more than {MAX_ALIASES:,} aliases (*name) in one file"))
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlRefused(_at(mark, f"nested more than {MAX_DEPTH} levels deep"))
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node.tag not in _STANDARD_TAGS:
            raise YamlRefused(
                _at(
                    node.start_mark,
                    f"the YAML tag {_short_tag(node.tag)} is not allowed: only plain values, lists and "
                    "mappings (no !!python/… or other tags)",
                )
            )
        return node


def _short_tag(tag: str) -> str:
    shown = "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag
    return repr(shown if len(shown) <= 60 else shown[:57] + "...")


def _at(mark: Any, message: str) -> Located:
    if mark is None:
        return Located(None, None, message)
    return Located(mark.line + 1, mark.column + 1, message)


def compose(text: str) -> Node | None:
    """The node tree of one YAML document (None for an empty one); YamlRefused says where and why not."""
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        line, col = position(text, bad.start())
        char = bad.group()
        raise YamlRefused(
            Located(
                line,
                col,
                f"character U+{ord(char):04X} is not allowed in YAML (a control character): remove it",
            )
        )
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlRefused(_at(mark, f"not valid YAML: {exc.problem or exc.context}")) from None
    except yaml.YAMLError as exc:
        raise YamlRefused(Located(None, None, f"not valid YAML: {exc}")) from None
    finally:
        loader.dispose()
    if node is not None:
        _check_expanded_size(node)
    return node


def _check_expanded_size(root: Node) -> None:
    """Refuse a document that aliases make too large or too deep (or that contains itself)."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) → (values, depth) once expanded
    open_nodes: set[int] = set()

    def measure(node: Node, level: int) -> tuple[int, int]:
        key = id(node)
        if key in open_nodes:
            raise YamlRefused(_at(node.start_mark, "an alias refers to a list or mapping that contains it"))
        if key not in measured:
            if level > MAX_DEPTH:
                raise YamlRefused(
                    _at(
                        node.start_mark, f"nested more than {MAX_DEPTH} levels deep once aliases are expanded"
                    )
                )
            open_nodes.add(key)
            children: list[Node] = []
            if isinstance(node, SequenceNode):
                children = list(node.value)
            elif isinstance(node, MappingNode):
                children = [part for pair in node.value for part in pair]
            total, depth = 1, 1
            for child in children:
                values, below = measure(child, level + 1)
                total, depth = total + values, max(depth, below + 1)
                if total > MAX_EXPANDED_NODES:
                    raise YamlRefused(
                        _at(
                            node.start_mark,
                            f"aliases make this document larger than {MAX_EXPANDED_NODES:,} values once expanded",
                        )
                    )
            open_nodes.discard(key)
            measured[key] = (total, depth)
        total, depth = measured[key]
        if level + depth - 1 > MAX_DEPTH:
            raise YamlRefused(
                _at(node.start_mark, f"nested more than {MAX_DEPTH} levels deep once aliases are expanded")
            )
        return total, depth

    measure(root, 1)


class NotAValue(Exception):
    """A node whose tagged value cannot be read (e.g. `!!int abc`, a 13th month)."""


def construct(node: Node) -> Any:
    """The Python value of NODE (from `compose`): str, int, float, bool, None, list, dict, date…"""
    constructor = yaml.SafeLoader("")
    try:
        return constructor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise NotAValue(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "Located",
    "NotAValue",
    "YamlRefused",
    "compose",
    "construct",
    "decode",
    "position",
    "read_text",
]
