from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Shared models of the project itself: the domain-event outbox."""

    name = "scheduler_project"
    label = "core"
    verbose_name = "Scheduler core"

    def ready(self) -> None:
        # Registers the OpenAPI description of the bearer-token scheme.
        from scheduler_project.api import schema  # noqa: F401
