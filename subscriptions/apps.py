from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    """Event subscriptions: inbound NATS events that trigger a tenant's schedule."""

    name = "subscriptions"
    verbose_name = "Event subscriptions"
