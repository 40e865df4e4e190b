"""The scheduler service's project package: settings, URLs, the Celery app and shared bases."""

from scheduler_project.celery import app as celery_app

__all__ = ("celery_app",)
