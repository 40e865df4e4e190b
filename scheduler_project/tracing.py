"""Tracing: OpenTelemetry for Django, Celery, requests and psycopg2, configured by the standard
``OTEL_*`` variables, and off unless they name somewhere to send spans.

**On or off.** Tracing is on when ``OTEL_TRACES_EXPORTER`` names exporters (``otlp``,
``console``; ``none`` turns it off) or, without it, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set; ``OTEL_SDK_DISABLED=true`` turns it off whatever
else is set. That differs from the SDK's own default (``otlp`` to localhost) on purpose: a
scheduler started without any OTEL variable sends nothing anywhere. Off, nothing of the SDK or the
instrumentations is even imported: no span is created, no library is wrapped, and the helpers
below return at once.

**On,** every other standard variable means what the SDK says: ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` (the process's role — ``scheduler-api``, ``scheduler-beat``,
``scheduler-worker`` — is the service name when they name none), ``OTEL_TRACES_SAMPLER`` and
``_ARG``, ``OTEL_PROPAGATORS``, ``OTEL_EXPORTER_OTLP_*`` (endpoint, headers, timeout,
compression, certificates; protocol ``http/protobuf``, the one installed), ``OTEL_BSP_*``, and
each instrumentation's own (``OTEL_PYTHON_DJANGO_EXCLUDED_URLS``, ...). One addition to the
sampler: a database query or HTTP call made outside any traced operation (a beat's idle tick, a
worker's heartbeat, the outbox relay polling) starts no trace of its own, or every beat would
send a handful of one-span traces each second.

**Once per process**, after any fork: gunicorn's ``post_fork`` hook (and ``wsgi.py``, for
other WSGI servers) for the API, Celery's ``worker_process_init`` in each prefork pool process
(``worker_init`` for the other pools) and ``beat_init`` for a beat (``scheduler_project.celery``).
A parent that configured tracing before forking would also do: the SDK restarts its export
thread in a forked child.

**One trace per run.** The beat opens a ``schedule.fire`` span for each run it sends (other
sends — retries, manual triggers, backfills, a freed concurrency slot — open ``run.enqueue``),
Celery's instrumentation publishes the message as its child and carries the context in the
message headers, the worker's ``run/runs.execute_run`` span continues it, ``run.deliver`` wraps
the delivery, and the HTTP target's request (requests' instrumentation) sends ``traceparent``.
An EVENT target's message carries the same headers, and domain events recorded inside a traced
operation keep its W3C trace context for the relay (``traceparent``/``tracestate``, the
CloudEvents distributed-tracing extension).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from scheduler_project.config import ConfigError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.util.types import Attributes

#: the exporters ``OTEL_TRACES_EXPORTER`` may name here (the packages installed)
EXPORTERS = ("otlp", "console")
#: the OTLP protocol installed (opentelemetry-exporter-otlp-proto-http)
OTLP_PROTOCOL = "http/protobuf"
#: what the API does not trace unless ``OTEL_PYTHON_DJANGO_EXCLUDED_URLS`` says otherwise:
#: probes and scrapes, a request every few seconds that would bury the traces that matter
DEFAULT_EXCLUDED_URLS = r"/(healthz|readyz|metrics)/?$"

_tracer = trace.get_tracer("scheduler")
_w3c = TraceContextTextMapPropagator()
# None: not configured in this process yet; then whether tracing is on.
_enabled: bool | None = None
_instrumentors: list[Any] = []


def tracing_exporters(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The span exporters the standard variables ask for; empty when tracing is off. Raises
    :class:`ConfigError` naming the variable for a value that cannot be honoured."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    named = [name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()]
    if named:
        if named == ["none"]:
            return ()
        unknown = [name for name in named if name not in EXPORTERS]
        if unknown:
            raise ConfigError(
                "OTEL_TRACES_EXPORTER", f"unknown exporter {unknown[0]!r}: use {', '.join(EXPORTERS)} or none"
            )
        exporters = tuple(dict.fromkeys(named))
    elif env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        exporters = ("otlp",)
    else:
        return ()
    if "otlp" in exporters:
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = env.get(variable, "").strip()
            if protocol:
                if protocol != OTLP_PROTOCOL:
                    raise ConfigError(variable, f"protocol {protocol!r} is not installed: use {OTLP_PROTOCOL}")
                break
    return exporters


def tracing_configure(service_name: str, *, exporter: SpanExporter | None = None) -> bool:
    """Set up tracing for this process, once; returns whether it is on.

    ``service_name`` is the process's role, used when ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` name no service. ``exporter`` (tests) turns tracing on with that
    exporter alone, spans handed over synchronously, whatever the environment says (and even if
    the environment had it off in this process already).
    """
    global _enabled
    if _enabled is not None and (exporter is None or _enabled):
        if exporter is not None:
            raise RuntimeError("tracing is already on in this process")
        return _enabled
    exporters = () if exporter is not None else tracing_exporters()
    if exporter is None and not exporters:
        _enabled = False
        return False

    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: service_name}))
        provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER, as the SDK reads it
        provider.sampler = _no_orphan_client_spans(provider.sampler)
        trace.set_tracer_provider(provider)
    # else: set up before, then shut down (tests): OpenTelemetry sets a provider once per process.
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    _instrument()
    _enabled = True
    return True


def tracing_shutdown() -> None:
    """Undo the instrumentation and flush what is left (tests; a process that ends cleanly
    flushes on its own, at exit). The tracer provider stays: OpenTelemetry sets it once."""
    global _enabled
    for instrumentor in reversed(_instrumentors):
        instrumentor.uninstrument()
    _instrumentors.clear()
    provider = trace.get_tracer_provider()
    if _enabled and hasattr(provider, "force_flush"):
        provider.force_flush()
    _enabled = None


def tracing_enabled() -> bool:
    return bool(_enabled)


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    # Reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT, _COMPRESSION, _CERTIFICATE.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _instrument() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler_project.settings")
    excluded = None
    if not (os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS")):
        excluded = DEFAULT_EXCLUDED_URLS
    # Django: a middleware put first in settings.MIDDLEWARE, so it must run before the WSGI
    # handler loads its middleware (gunicorn's post_fork, wsgi.py: both come first).
    instrumentations: list[tuple[Any, dict[str, Any]]] = [
        (DjangoInstrumentor(), {"excluded_urls": excluded}),
        (CeleryInstrumentor(), {}),
        (RequestsInstrumentor(), {}),
        # Connections opened from now on; the SQL text (with placeholders, never the values).
        (Psycopg2Instrumentor(), {"enable_commenter": False}),
    ]
    for instrumentor, options in instrumentations:
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(**options)
            _instrumentors.append(instrumentor)


def _no_orphan_client_spans(sampler: Sampler) -> Sampler:
    """``sampler``, except that a client span (a database query, an HTTP call) with no parent is
    dropped: work outside any traced operation starts no trace."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class NoOrphanClientSpans(Sampler):
        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: trace.SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[trace.Link] | None = None,
            trace_state: trace.TraceState | None = None,
        ) -> SamplingResult:
            if kind == trace.SpanKind.CLIENT and not trace.get_current_span(parent_context).get_span_context().is_valid:
                return SamplingResult(Decision.DROP)
            return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"NoOrphanClientSpans{{{sampler.get_description()}}}"

    return NoOrphanClientSpans()


# --- For the code that traces --------------------------------------------------------------------


def span(name: str, attributes: Mapping[str, Any] | None = None) -> contextlib.AbstractContextManager[Any]:
    """A span around a block, current inside it (an exception is recorded on it and re-raised);
    a no-op context when tracing is off. Attributes that are None are left out."""
    if not _enabled:
        return contextlib.nullcontext()
    return _tracer.start_as_current_span(name, attributes=_clean(attributes))


def span_consuming(
    name: str, carrier: Mapping[str, str], attributes: Mapping[str, Any] | None = None
) -> contextlib.AbstractContextManager[Any]:
    """A CONSUMER span around the handling of an inbound message, continuing the trace whose
    context its headers carry (``traceparent``: what the relay and OpenTelemetry's own
    instrumentations put there), or starting one; a no-op context when tracing is off."""
    if not _enabled:
        return contextlib.nullcontext()
    return _tracer.start_as_current_span(
        name, context=propagate.extract(carrier), kind=trace.SpanKind.CONSUMER, attributes=_clean(attributes)
    )


def span_annotate(attributes: Mapping[str, Any]) -> None:
    """Add attributes to the current span (e.g. Celery's task span), when tracing is on."""
    if _enabled:
        trace.get_current_span().set_attributes(_clean(attributes))


def trace_headers() -> dict[str, str]:
    """The current trace context as message headers (``OTEL_PROPAGATORS``: ``traceparent``,
    ``tracestate``, ``baggage``); empty when tracing is off or nothing is traced."""
    if not _enabled:
        return {}
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def trace_context() -> dict[str, str]:
    """The current span's W3C ``traceparent`` and ``tracestate`` (only those: what the CloudEvents
    distributed-tracing extension carries); empty when tracing is off or nothing is traced."""
    if not _enabled:
        return {}
    carrier: dict[str, str] = {}
    _w3c.inject(carrier)
    return carrier


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {key: value for key, value in (attributes or {}).items() if value is not None}
