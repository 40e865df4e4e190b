"""How fast the business-day engine answers, against a bare weekday test in the same process.

    .venv/bin/python bench/calendar_engine.py [--calls 200000] [--repeat 5]

Warm: the calendar has folded the year already (the beat's steady state). Cold: the first
question about a year, once with the `holidays` year already built by another calendar of the
same source (a new calendar object, e.g. a row read again) and once from nothing (the
`holidays` object for that year built too). Pure Python, no database, no Django.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from calendars import engine
from calendars.engine import BusinessCalendar

WEEKEND = frozenset({5, 6})
ONE_DAY = timedelta(days=1)
START = date(2027, 1, 1)
CALENDARS = {
    "weekend only": {},
    "DE-BY + 10 custom dates": {
        "country": "DE",
        "subdivision": "BY",
        "holidays": {START + timedelta(days=17 * i): "Company day" for i in range(10)},
    },
    "NYSE": {"market": "NYSE"},
}


FIRST_IN_PROCESS = """
import time
from datetime import date
from calendars.engine import BusinessCalendar
for kwargs in ({"country": "DE", "subdivision": "BY"}, {"market": "NYSE"}):
    started = time.perf_counter()
    BusinessCalendar(**kwargs).is_business_day(date(2027, 5, 5))
    print((time.perf_counter() - started) * 1e3)
"""


def baseline_is_business_day(day: date) -> bool:
    return day.weekday() not in WEEKEND


def baseline_next_business_day(day: date) -> date:
    day += ONE_DAY
    while day.weekday() in WEEKEND:
        day += ONE_DAY
    return day


def rate(function: Callable[[date], object], days: list[date], repeat: int) -> float:
    """Calls per second: the median of `repeat` passes over `days`."""
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        for day in days:
            function(day)
        timings.append(time.perf_counter() - started)
    return len(days) / statistics.median(timings)


def per_call_us(function: Callable[[], object], count: int, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(count):
            function()
        timings.append((time.perf_counter() - started) / count)
    return statistics.median(timings) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200_000, help="calls per timed pass")
    parser.add_argument("--repeat", type=int, default=5, help="passes; the median is reported")
    args = parser.parse_args()
    # Dates spread over one year, in an order that defeats nothing in particular.
    days = [START + timedelta(days=(i * 7919) % 365) for i in range(args.calls)]

    base_is = rate(baseline_is_business_day, days, args.repeat)
    base_next = rate(baseline_next_business_day, days, args.repeat)
    print(f"calls per second, median of {args.repeat} passes of {args.calls:,} calls (dates in 2027)\n")
    print(f"{'calendar':26} {'operation':22} {'calls/s':>12} {'time/baseline':>14}")
    print(f"{'baseline':26} {'weekday() in weekend':22} {base_is:>12,.0f} {'1.00x':>14}")
    print(f"{'baseline':26} {'next weekday loop':22} {base_next:>12,.0f} {'1.00x':>14}")
    for name, kwargs in CALENDARS.items():
        calendar = BusinessCalendar(**kwargs)  # type: ignore[arg-type]
        calendar.is_business_day(START)  # warm: 2027 folded
        calendar.next_business_day(date(2027, 12, 31))  # and 2028 for searches past the year end
        warm_is = rate(calendar.is_business_day, days, args.repeat)
        warm_next = rate(calendar.next_business_day, days, args.repeat)
        print(f"{name:26} {'is_business_day':22} {warm_is:>12,.0f} {base_is / warm_is:>13.2f}x")
        print(f"{name:26} {'next_business_day':22} {warm_next:>12,.0f} {base_next / warm_next:>13.2f}x")

    print("\nfirst question about a year (cold), median microseconds per call")
    count = max(args.calls // 1000, 20)
    for name, kwargs in CALENDARS.items():

        def fold_only(kwargs: dict[str, object] = kwargs) -> None:
            # The holidays year is cached by an earlier calendar; only this calendar's fold runs.
            BusinessCalendar(**kwargs).is_business_day(START)  # type: ignore[arg-type]

        def from_nothing(kwargs: dict[str, object] = kwargs) -> None:
            engine._library_year.cache_clear()  # the `holidays` object for 2027 is built again
            BusinessCalendar(**kwargs).is_business_day(START)  # type: ignore[arg-type]

        BusinessCalendar(**kwargs).is_business_day(START)  # type: ignore[arg-type]
        fold = per_call_us(fold_only, count, args.repeat)
        cold = per_call_us(from_nothing, count, args.repeat)
        print(f"{name:26} new calendar object {fold:8.1f} us   nothing cached {cold:8.1f} us")

    # The very first question in a fresh process also loads the package's entity module and its
    # translation catalogue; measured in a child interpreter, after the imports.
    first = subprocess.run(
        [sys.executable, "-c", FIRST_IN_PROCESS], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    print(f"{'DE-BY / NYSE':26} first in a process   {float(first[0]):8.1f} ms / {float(first[1]):.1f} ms")

    row = CALENDARS["DE-BY + 10 custom dates"]
    engine.interned(BusinessCalendar(**row)).is_business_day(START)  # type: ignore[arg-type]
    interned = per_call_us(
        lambda: engine.interned(BusinessCalendar(**row)).is_business_day(START),  # type: ignore[arg-type]
        count * 10,
        args.repeat,
    )
    print(f"{'DE-BY + 10 custom dates':26} build + interned()   {interned:8.1f} us   (the selector's path, warm)")


if __name__ == "__main__":
    main()
