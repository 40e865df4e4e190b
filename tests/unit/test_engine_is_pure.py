"""The engine imports nothing from Django, Celery or the apps' Django modules."""

from __future__ import annotations

import subprocess
import sys

from scheduler_project.config import BASE_DIR

ENGINE_MODULES = [
    "schedules.engine.spec",
    "schedules.engine.errors",
    "schedules.engine.zones",
    "schedules.engine.base",
    "schedules.engine.cron",
    "schedules.engine.rrule",
    "schedules.engine.simple",
    "schedules.engine.business",
    "schedules.engine.compose",
    "schedules.engine.lookback",
    "runs.targets.spec",
    "calendars.sources",
    "calendars.engine",
]


def test_engine_loads_without_django_or_celery() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {module}\n" for module in ENGINE_MODULES)
        + "loaded = sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'celery', 'rest_framework'})\n"
        + "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""
