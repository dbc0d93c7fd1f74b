"""The benchmark's generated data set: the same bytes for the same arguments, and clean ingest input."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from sqlalchemy.engine import Engine

from outreach.state.ingest import ingest_files, rejection

GENERATE = Path(__file__).resolve().parents[2] / "bench" / "generate.py"
NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_generate", GENERATE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_same_arguments_generate_the_same_files(tmp_path: Path) -> None:
    generate = load_generator()

    generate.write(200, tmp_path / "a", NOW, 7)
    generate.write(200, tmp_path / "b", NOW, 7)

    for name in (
        "customers.jsonl",
        "orders.jsonl",
        "checkouts.jsonl",
        "survey_responses.jsonl",
        "manifest.json",
    ):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_generated_files_load_without_a_bad_line(engine: Engine, tmp_path: Path) -> None:
    manifest = load_generator().write(300, tmp_path, NOW, 7)

    reports = ingest_files(engine, sorted(tmp_path.glob("*.jsonl")))

    assert rejection(reports) is None, rejection(reports)
    assert {report.table: report.records for report in reports} == manifest["counts"]
