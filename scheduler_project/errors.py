"""Errors raised by services. The API's exception handler turns each into a problem document."""

from __future__ import annotations


class ApplicationError(Exception):
    status = 400
    code = "application-error"
    title = "Request cannot be processed"

    def __init__(self, detail: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or {}


class ValidationFailed(ApplicationError):
    status = 400
    code = "invalid-input"
    title = "Invalid input"

    def __init__(self, errors: dict[str, list[str]], detail: str = "The request has invalid fields.") -> None:
        super().__init__(detail, errors)


class NotFound(ApplicationError):
    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(ApplicationError):
    status = 409
    code = "conflict"
    title = "Conflict"
