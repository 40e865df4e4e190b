"""The time engine: triggers and their JSON contract. Imports nothing from Django or Celery."""
