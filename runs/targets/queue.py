"""The QUEUE target: a message on the scheduler's own broker, for consumers that read a queue.

``{"queue": "reports"}`` publishes the run's document as a plain JSON message to that queue
(declared durable if it does not exist) through kombu; ``{"task": "reports.build"}`` sends that
Celery task by name, with the run's payload as keyword arguments, to ``queue`` or the default
queue. Either way the run id travels in the message headers (``scheduler-run-id`` on a plain
message; ``scheduler_run_id`` on a task, readable as ``self.request.scheduler_run_id``), so a
consumer can de-duplicate a redelivered run.
"""

from __future__ import annotations

import time

from django.conf import settings
from kombu import Exchange, Queue

from runs.targets.base import Delivery, Receipt, RetryableError


def deliver(delivery: Delivery) -> Receipt:
    from scheduler_project.celery import app

    target = delivery.target
    timeout = delivery.remaining()
    started = time.monotonic()
    # kombu's Connection.ensure takes max_retries and intervals only (a "timeout" key is a
    # TypeError); the deadline goes to publish() itself.
    retry_policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
    try:
        if "task" in target:
            queue = target.get("queue") or settings.CELERY_TASK_DEFAULT_QUEUE
            app.send_task(
                target["task"],
                kwargs=delivery.body["payload"],
                queue=queue,
                headers={"scheduler_run_id": delivery.run_id, "scheduler_tenant_id": delivery.tenant_id},
                retry=True,
                retry_policy=retry_policy,
                timeout=timeout,
            )
            detail = {"task": target["task"], "queue": queue}
        else:
            queue = target["queue"]
            # The layout kombu.SimpleQueue(queue) and Celery's queues use: a direct exchange of
            # the queue's name bound by the same routing key.
            declared = Queue(queue, Exchange(queue, type="direct"), routing_key=queue, durable=True)
            with app.producer_or_acquire() as producer:
                producer.publish(
                    delivery.body,
                    exchange=declared.exchange,
                    routing_key=queue,
                    declare=[declared],
                    serializer="json",
                    delivery_mode=2,  # persistent
                    headers={"scheduler-run-id": delivery.run_id, **delivery.headers},
                    message_id=delivery.run_id,
                    retry=True,
                    retry_policy=retry_policy,
                    timeout=timeout,
                )
            detail = {"queue": queue}
    except Exception as exc:  # the broker is down or refused the message
        raise RetryableError(
            f"publishing to the broker failed: {exc or type(exc).__name__}", error_type=type(exc).__name__
        ) from exc
    return Receipt(latency_ms=int((time.monotonic() - started) * 1000), detail=detail)
