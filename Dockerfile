# One image for every role: the API (default command), beat and worker differ only in command.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/var/lib/scheduler \
    PROMETHEUS_MULTIPROC_DIR=/var/lib/scheduler/metrics \
    PORT=3080

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN useradd --system --home-dir /app --shell /usr/sbin/nologin scheduler \
    && mkdir -p "$DATA_DIR" "$PROMETHEUS_MULTIPROC_DIR" \
    && DATA_DIR=/tmp/build PROMETHEUS_MULTIPROC_DIR= python manage.py collectstatic --noinput -v 0 \
    && cp -r /tmp/build/static "$DATA_DIR/static" \
    && rm -rf /tmp/build \
    && chown -R scheduler "$DATA_DIR"
USER scheduler

EXPOSE 3080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=4)"
# The metrics directory starts empty in a new container; compose's migrate job empties the shared
# volume at each start (a Kubernetes emptyDir starts empty with its pod).
CMD ["sh", "-c", "exec gunicorn scheduler_project.wsgi --config python:scheduler_project.gunicorn_conf --bind 0.0.0.0:${PORT} --workers ${WEB_CONCURRENCY:-4} --graceful-timeout 20"]
