"""Errors raised by the engine. Each carries field paths relative to the object it checked."""

from __future__ import annotations


class InvalidTrigger(ValueError):
    """A trigger document or expression that cannot be used; ``errors`` maps field paths to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path or 'trigger'}: {' '.join(msgs)}" for path, msgs in errors.items()))
