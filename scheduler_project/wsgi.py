"""WSGI entry point (gunicorn scheduler_project.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

from scheduler_project import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler_project.settings")

# Before the handler loads its middleware (Django's instrumentation adds one). A no-op where
# gunicorn's post_fork hook did it already (scheduler_project/gunicorn_conf.py).
tracing.tracing_configure("scheduler-api")
application = get_wsgi_application()
