"""Which OTEL_* settings turn tracing on, and what each process does with them: off, nothing of
the SDK is imported and no library is wrapped; on, each process role names its service. Each case
runs in a fresh interpreter, because OpenTelemetry's tracer provider is set once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from scheduler_project.config import BASE_DIR, ConfigError
from scheduler_project.tracing import tracing_exporters

ENDPOINT = "http://127.0.0.1:4318"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ()),
        ({"OTEL_SERVICE_NAME": "scheduler", "OTEL_TRACES_SAMPLER": "always_on"}, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT + "/v1/traces"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",)),
        ({"OTEL_TRACES_EXPORTER": " OTLP , console,otlp"}, ("otlp", "console")),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ()),
        ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "console"}, ()),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ("otlp",)),
        # The signal's own protocol wins over the general one.
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT,
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            ("otlp",),
        ),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ("console",)),
    ],
    ids=[
        "nothing_set_is_off",
        "a_name_or_sampler_alone_is_off",
        "an_endpoint_turns_otlp_on",
        "a_traces_endpoint_turns_otlp_on",
        "console",
        "several_exporters_once_each",
        "none_wins_over_an_endpoint",
        "sdk_disabled_wins",
        "sdk_disabled_false_is_ignored",
        "http_protobuf_is_installed",
        "traces_protocol_wins",
        "protocol_matters_only_for_otlp",
    ],
)
def test_the_standard_variables_decide_whether_tracing_is_on(env: dict[str, str], expected: tuple[str, ...]) -> None:
    assert tracing_exporters(env) == expected


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp,jaeger"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
    ],
    ids=["uninstalled_exporter", "one_uninstalled_among_several", "grpc_not_installed", "http_json_not_installed"],
)
def test_a_value_tracing_cannot_honour_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as error:
        tracing_exporters(env)
    assert error.value.variable == variable


# What a process reports about its tracing, from a fresh interpreter.
PROBE = """
import json, os, sys, contextlib
{setup}
import celery.signals, psycopg2, requests
from opentelemetry import trace
from scheduler_project import tracing
SDK = ("opentelemetry.sdk", "opentelemetry.instrumentation", "opentelemetry.exporter")
provider = trace.get_tracer_provider()
resource = getattr(provider, "resource", None)
print(json.dumps({{
    "enabled": tracing.tracing_enabled(),
    "provider": type(provider).__name__,
    "service": resource.attributes.get("service.name") if resource else None,
    "sdk_imported": sorted(m for m in sys.modules if m.startswith(SDK)),
    "requests_wrapped": hasattr(requests.Session.send, "__wrapped__"),
    "psycopg2_wrapped": hasattr(psycopg2.connect, "__wrapped__"),
    "publish_receivers": len(celery.signals.before_task_publish.receivers),
    "span_is_a_no_op": isinstance(tracing.span("x"), contextlib.nullcontext),
    "headers": tracing.trace_headers(),
}}))
"""


def _probe(setup: str, **env: str) -> dict[str, Any]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler_project.settings")
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(setup=setup)],
        cwd=BASE_DIR,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


API = "from scheduler_project import wsgi"
WORKER = "from scheduler_project.celery import app\ncelery.signals.worker_process_init.send(sender=None)"
BEAT = "from scheduler_project.celery import app\ncelery.signals.beat_init.send(sender=None)"


@pytest.mark.parametrize("setup", [API, WORKER, BEAT], ids=["api", "worker_pool_process", "beat"])
def test_off_when_unset_nothing_is_imported_wrapped_or_traced(setup: str) -> None:
    report = _probe("import celery.signals\n" + setup)

    assert report == {
        "enabled": False,
        "provider": "ProxyTracerProvider",  # the API's no-op default: no SDK provider
        "service": None,
        "sdk_imported": [],
        "requests_wrapped": False,
        "psycopg2_wrapped": False,
        "publish_receivers": 0,
        "span_is_a_no_op": True,
        "headers": {},
    }


@pytest.mark.parametrize(
    ("setup", "service"),
    [(API, "scheduler-api"), (WORKER, "scheduler-worker"), (BEAT, "scheduler-beat")],
    ids=["api", "worker_pool_process", "beat"],
)
def test_on_each_process_role_is_its_service_and_the_libraries_are_instrumented(setup: str, service: str) -> None:
    report = _probe("import celery.signals\n" + setup, OTEL_TRACES_EXPORTER="console")

    assert report["enabled"] is True
    assert (report["provider"], report["service"]) == ("TracerProvider", service)
    assert report["requests_wrapped"]
    assert report["psycopg2_wrapped"]
    assert report["publish_receivers"] == 1
    assert report["span_is_a_no_op"] is False
    assert report["headers"] == {}  # nothing traced at this moment


def test_otel_service_name_and_resource_attributes_win_over_the_role() -> None:
    named = _probe("import celery.signals\n" + BEAT, OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="acme-beat")
    by_resource = _probe(
        "import celery.signals\n" + BEAT,
        OTEL_TRACES_EXPORTER="console",
        OTEL_RESOURCE_ATTRIBUTES="service.name=acme-scheduler,deployment.environment=test",
    )

    assert (named["service"], by_resource["service"]) == ("acme-beat", "acme-scheduler")


PREFORK_CLASS = "__import__('celery.concurrency.prefork', fromlist=['TaskPool']).TaskPool"
SOLO_CLASS = "__import__('celery.concurrency.solo', fromlist=['TaskPool']).TaskPool"


@pytest.mark.parametrize(
    ("pool", "traced"),
    [("'prefork'", False), (PREFORK_CLASS, False), ("'processes'", False), (SOLO_CLASS, True), ("'threads'", True)],
    ids=["prefork_leaves_it_to_each_pool_process", "prefork_class", "processes_alias", "solo_class", "threads"],
)
def test_a_worker_that_runs_tasks_itself_sets_up_tracing_in_its_main_process(pool: str, traced: bool) -> None:
    setup = (
        "from scheduler_project.celery import app\n"
        f"class Worker:\n    pool_cls = {pool}\n"
        "celery.signals.worker_init.send(sender=Worker())"
    )
    report = _probe("import celery.signals\n" + setup, OTEL_TRACES_EXPORTER="console")

    assert report["enabled"] is traced


def test_a_bad_otel_value_stops_the_process_at_settings() -> None:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=BASE_DIR,
        env={**environ, "DJANGO_SETTINGS_MODULE": "scheduler_project.settings", "OTEL_TRACES_EXPORTER": "zipkin"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "configuration error: OTEL_TRACES_EXPORTER: unknown exporter 'zipkin': use otlp, console or none"
    )
