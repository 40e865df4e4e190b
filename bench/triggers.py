"""How fast the trigger engine answers "when next?", against croniter and dateutil in the same process.

    .venv/bin/python bench/triggers.py [--calls 5000] [--repeat 5]

Next-fire computations per second for typical triggers (each call asks from a different instant,
spread over a week of June 2027 in Europe/Berlin, away from DST transitions), each beside its
baseline: croniter's own ``get_next`` on the same expression (a fresh iterator per call, which
is what answering "after this instant" takes), and plain dateutil ``rrule.after()`` with the
same DTSTART. Then how the RRULE cost grows with the age of DTSTART: a daily rule asked about
June 2027 whose DTSTART is a day, a year or ten years earlier, ours against plain dateutil.
Last, what a cron costs within hours of a DST transition, where the search walks piecewise.
Pure Python: no database, no Django. Single-threaded, so calls per second are per core.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from croniter import croniter
from dateutil.rrule import rrulestr

from calendars.engine import BusinessCalendar
from schedules.engine.business import BusinessDayTrigger, CalendarPolicyTrigger
from schedules.engine.cron import CronTrigger
from schedules.engine.rrule import RRuleTrigger

ZONE = "Europe/Berlin"
TZ = ZoneInfo(ZONE)
BAVARIA = BusinessCalendar(country="DE", subdivision="BY")
WINDOW_START = datetime(2027, 6, 1, tzinfo=UTC)
RECENT = "2027-05-31T02:00:00"  # a day before the window
AGES = {"1 day": timedelta(days=1), "1 year": timedelta(days=365), "10 years": timedelta(days=3652)}

CRONS = {
    "cron 0 2 * * *": "0 2 * * *",
    "cron */5 * * * *": "*/5 * * * *",
    "cron 6 fields 30 */15 9-17 * * MON-FRI": "30 */15 9-17 * * MON-FRI",
}
RRULES = {
    "rrule daily": "FREQ=DAILY",
    "rrule monthly last weekday (BYSETPOS)": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
}


def instants(count: int) -> list[datetime]:
    """``count`` aware instants spread over a week, none on a whole minute."""
    step = timedelta(days=7) / count
    return [WINDOW_START + step * i + timedelta(seconds=17) for i in range(count)]


def rate(function: Callable[[datetime], object], afters: list[datetime], repeat: int) -> float:
    """Calls per second: the median of ``repeat`` passes over ``afters``."""
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        for after in afters:
            function(after)
        timings.append(time.perf_counter() - started)
    return len(afters) / statistics.median(timings)


def croniter_next(expression: str) -> Callable[[datetime], object]:
    seconds = len(expression.split()) == 6

    def call(after: datetime) -> object:
        wall = after.astimezone(TZ).replace(tzinfo=None)
        return croniter(expression, wall, second_at_beginning=seconds).get_next(datetime)

    return call


def dateutil_after(rule: str, dtstart: datetime) -> Callable[[datetime], object]:
    plain = rrulestr(rule, dtstart=dtstart, cache=False)

    def call(after: datetime) -> object:
        return plain.after(after.astimezone(TZ).replace(tzinfo=None))

    return call


def row(name: str, ours: float, baseline_name: str = "", baseline: float | None = None) -> None:
    ratio = f"{baseline / ours:12.2f}x" if baseline else ""
    base = f"{baseline:12,.0f}" if baseline else ""
    print(f"{name:42} {ours:12,.0f}   {baseline_name:24} {base:>12} {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000, help="calls per pass (default 5000)")
    parser.add_argument("--repeat", type=int, default=5, help="passes; the median counts (default 5)")
    args = parser.parse_args()
    afters = instants(args.calls)
    print(f"next-fire computations per second, median of {args.repeat} passes of {args.calls:,} calls")
    print("(Europe/Berlin, 'after' spread over 2027-06-01..07; ours/baseline: our time per call over the baseline's)\n")
    print(f"{'trigger':42} {'ours/s':>12}   {'baseline':24} {'baseline/s':>12} {'ours/baseline':>13}")

    rates: dict[str, float] = {}
    for name, expression in CRONS.items():
        trigger = CronTrigger(expression, ZONE)
        rates[name] = rate(trigger.next_fire, afters, args.repeat)
        row(name, rates[name], "croniter get_next", rate(croniter_next(expression), afters, args.repeat))
    start = datetime.fromisoformat(RECENT)
    for name, rule in RRULES.items():
        trigger = RRuleTrigger(rule, ZONE, RECENT)
        rates[name] = rate(trigger.next_fire, afters, args.repeat)
        row(name, rates[name], "dateutil rrule.after()", rate(dateutil_after(rule, start), afters, args.repeat))
    shifted = CalendarPolicyTrigger(CronTrigger("0 2 * * *", ZONE), BAVARIA, "NEXT_BUSINESS_DAY", ZONE)
    plain_cron = rates["cron 0 2 * * *"]
    rates["shifted"] = rate(shifted.next_fire, afters, args.repeat)
    row("cron 0 2 * * * NEXT_BUSINESS_DAY (DE-BY)", rates["shifted"], "our plain 0 2 * * *", plain_cron)
    business_day = BusinessDayTrigger(3, clock(9), ZONE, BAVARIA)
    rates["business day"] = rate(business_day.next_fire, afters, args.repeat)
    row("3rd business day 09:00 (DE-BY)", rates["business day"], "our plain 0 2 * * *", plain_cron)

    print("\nRRULE cost against the age of DTSTART (FREQ=DAILY at 02:00, asked about 2027-06-01..07)\n")
    heading = ("DTSTART age", "ours us/call", "dateutil us/call", "dateutil/ours", "ours/ours 1 day")
    print("{:12} {:>13} {:>17} {:>14} {:>16}".format(*heading))
    fresh: float | None = None
    for label, age in AGES.items():
        dtstart = datetime.fromisoformat("2027-06-01T02:00:00") - age
        ours = 1e6 / rate(RRuleTrigger("FREQ=DAILY", ZONE, dtstart.isoformat()).next_fire, afters, args.repeat)
        # Plain dateutil gets slow with age: fewer calls keep the pass short.
        few = afters[:: max(1, len(afters) // (200 if age.days > 300 else 2000))]
        theirs = 1e6 / rate(dateutil_after("FREQ=DAILY", dtstart), few, args.repeat)
        fresh = fresh or ours
        print(f"{label:12} {ours:13.1f} {theirs:17.1f} {theirs / ours:13.1f}x {ours / fresh:15.2f}x")

    print("\nNear a transition (within 2 h of 2027-10-31 01:00 UTC, Berlin's fall back) against a week away")
    print("(the search walks the pieces between transitions: a few candidates each, dense or sparse)\n")
    print("{:42} {:>15} {:>15} {:>10}".format("trigger", "away us/call", "near us/call", "near/away"))
    transition = datetime(2027, 10, 31, 1, 0, tzinfo=UTC)
    for expression, calls in (("0 2 * * *", 200), ("*/5 * * * *", 100), ("* * * * * *", 100)):
        trigger = CronTrigger(expression, ZONE)
        near = [transition + timedelta(hours=-2 + 4 * i / calls, seconds=17) for i in range(calls)]
        away = [moment - timedelta(days=7) for moment in near]
        away_us = 1e6 / rate(trigger.next_fire, away, args.repeat)
        near_us = 1e6 / rate(trigger.next_fire, near, args.repeat)
        print(f"{'cron ' + expression:42} {away_us:15.1f} {near_us:15.1f} {near_us / away_us:9.1f}x")

    print()
    verdict = "met" if plain_cron >= 10_000 else "NOT met"
    print(f"goal >= 10,000/s for a plain cron: {plain_cron:,.0f}/s, {verdict}")
    slowest_rule = min(rates[name] for name in RRULES)
    print(f"RRULE (slowest of the two) / plain cron: {slowest_rule / plain_cron:.2f}x the rate")


if __name__ == "__main__":
    main()
