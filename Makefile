# Shortcuts for the common commands; the scripts are the source of truth (they need no make).
.PHONY: serve test lint format typecheck migrations schema

serve:  ## API, beat and a worker on the embedded default
	./scripts/serve

test:  ## services up, lint, migrations check, the whole test suite
	./scripts/test

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

typecheck:
	.venv/bin/mypy .

migrations:
	.venv/bin/python manage.py makemigrations

schema:  ## write the OpenAPI document to openapi.yaml
	.venv/bin/python manage.py spectacular --validate --file openapi.yaml
