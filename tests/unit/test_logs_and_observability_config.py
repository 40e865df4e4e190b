"""Log rendering (JSON and console, context and trace ids) and the observability settings read
from the environment. No database."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog

from scheduler_project import logs, prometheus
from scheduler_project.config import ConfigError, load


@pytest.fixture
def render() -> Iterator[tuple[logging.Logger, io.StringIO, Any]]:
    """A logger of its own, writing through ``logs.formatter(fmt)`` into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logger = logging.getLogger(f"test.logs.{id(buffer)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)

    def use(log_format: str) -> None:
        handler.setFormatter(logs.formatter(log_format))

    yield logger, buffer, use
    logger.removeHandler(handler)
    structlog.contextvars.clear_contextvars()


def test_a_standard_library_line_is_json_with_the_bound_context(render: Any) -> None:
    logger, buffer, use = render
    use("json")

    with structlog.contextvars.bound_contextvars(tenant_id="acme", run_id="r-1"):
        logger.info("run %s: %s", "r-1", "SUCCEEDED", extra={"attempt": 2})
    logger.info("after")

    first, second = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert first.pop("timestamp").endswith("Z")
    assert first == {
        "event": "run r-1: SUCCEEDED",
        "logger": logger.name,
        "level": "info",
        "tenant_id": "acme",
        "run_id": "r-1",
        "attempt": 2,
    }
    assert "tenant_id" not in second


def test_an_exception_is_one_json_field(render: Any) -> None:
    logger, buffer, use = render
    use("json")

    try:
        raise ValueError("bad payload")
    except ValueError:
        logger.exception("delivery failed")

    line = json.loads(buffer.getvalue())
    assert line["level"] == "error"
    assert "ValueError: bad payload" in line["exception"]


def test_console_lines_are_key_value_text(render: Any) -> None:
    logger, buffer, use = render
    use("console")

    with structlog.contextvars.bound_contextvars(tenant_id="acme"):
        logger.warning("slow target")

    text = buffer.getvalue()
    assert "slow target" in text
    assert "tenant_id=acme" in text
    assert not text.startswith("{")


def test_trace_ids_come_from_the_current_opentelemetry_span(render: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    logger, buffer, use = render
    use("json")
    context = SimpleNamespace(is_valid=True, trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736, span_id=0x00F067AA0BA902B7)
    span = SimpleNamespace(get_span_context=lambda: context)
    monkeypatch.setattr(logs, "otel_trace", SimpleNamespace(get_current_span=lambda: span))

    logger.info("traced")
    context.is_valid = False  # outside a span: no ids
    logger.info("untraced")

    traced, untraced = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert (traced["trace_id"], traced["span_id"]) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert "trace_id" not in untraced


def test_without_opentelemetry_lines_carry_no_trace_ids(render: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    logger, buffer, use = render
    use("json")
    monkeypatch.setattr(logs, "otel_trace", None)

    logger.info("plain")

    assert "trace_id" not in json.loads(buffer.getvalue())


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="json, console"):
        logs.formatter("xml")


def test_observability_defaults(tmp_path: Path) -> None:
    config = load({"DATA_DIR": str(tmp_path)})

    assert config.log_format == "json"
    assert config.ready_require == ("database", "broker", "nats", "beat")
    assert config.metrics_dir is None
    assert (config.metrics_port, config.metrics_addr) == (None, "0.0.0.0")


def test_observability_settings_are_read(tmp_path: Path) -> None:
    config = load(
        {
            "DATA_DIR": str(tmp_path),
            "LOG_FORMAT": "Console",
            "READY_REQUIRE": "database, workers,database",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
            "METRICS_PORT": "9101",
            "METRICS_ADDR": "::1",
        }
    )

    assert config.log_format == "console"
    assert config.ready_require == ("database", "workers")
    assert config.metrics_dir == tmp_path / "metrics"
    assert (tmp_path / "metrics").is_dir()  # created: a typo fails at start-up, not at the first metric
    assert (config.metrics_port, config.metrics_addr) == (9101, "::1")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LOG_FORMAT", "xml", "LOG_FORMAT: must be one of json, console"),
        ("READY_REQUIRE", "database,redis", "READY_REQUIRE: must name checks among"),
        ("READY_REQUIRE", ",", "READY_REQUIRE: must name checks among"),
        ("PROMETHEUS_MULTIPROC_DIR", "/proc/metrics", "PROMETHEUS_MULTIPROC_DIR: cannot create"),
        ("METRICS_PORT", "0", "METRICS_PORT: must be a port number 1-65535"),
        ("METRICS_PORT", "http", "METRICS_PORT: must be a port number 1-65535"),
        ("METRICS_ADDR", "metrics.local", "METRICS_ADDR: must be an IP address"),
    ],
    ids=[
        "unknown_log_format",
        "unknown_check",
        "no_check",
        "uncreatable_metrics_dir",
        "zero_port",
        "named_port",
        "host_name_address",
    ],
)
def test_bad_observability_settings_name_the_variable(tmp_path: Path, variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load({"DATA_DIR": str(tmp_path), variable: value})


def test_metric_files_are_named_by_host_and_pid() -> None:
    identifier = prometheus.process_identifier()

    assert identifier.endswith(f"-{os.getpid()}")
    assert "_" not in identifier  # prometheus_client splits file names on underscores
    assert prometheus.process_identifier(42).endswith("-42")
