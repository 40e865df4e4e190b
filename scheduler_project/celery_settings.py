"""Celery's settings: Django's ``CELERY_*`` settings, copied into a plain dict.

``scheduler_project.celery`` points Celery here; the import happens when Celery first reads a
setting, so Django's settings are configured by then. A setting changed at run time in Django
(a test's ``override_settings``) is not seen by Celery; change ``celery_app.conf`` instead.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

CELERY_SETTINGS: dict[str, Any] = {
    name: getattr(settings, name) for name in dir(settings) if name.startswith("CELERY_")
}
