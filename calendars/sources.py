"""Which holiday sources the `holidays` package offers: countries, subdivisions, markets.

Pure Python (no Django), shared by the API's validation and the calendar engine.
"""

from __future__ import annotations

import functools

import holidays


@functools.cache
def _countries() -> dict[str, list[str]]:
    return holidays.list_supported_countries()


@functools.cache
def _markets() -> dict[str, list[str]]:
    return holidays.list_supported_financial()


def source_errors(*, country: str, subdivision: str, market: str) -> dict[str, list[str]]:
    """Problems with a calendar's holiday source, keyed by field; empty when it is usable."""
    errors: dict[str, list[str]] = {}
    if country and market:
        errors["market"] = ["Give a country or a financial market, not both."]
        return errors
    if subdivision and not country:
        errors["subdivision"] = ["A subdivision needs a country."]
        return errors
    if country:
        countries = _countries()
        if country not in countries:
            errors["country"] = [f"Unknown country {country!r}; use an ISO 3166-1 code the holidays package knows."]
        elif subdivision and subdivision not in countries[country]:
            known = ", ".join(countries[country][:40]) or "none"
            errors["subdivision"] = [f"Unknown subdivision {subdivision!r} of {country}; known: {known}."]
    if market and market not in _markets():
        known = ", ".join(sorted(_markets()))
        errors["market"] = [f"Unknown financial market {market!r}; known: {known}."]
    return errors
