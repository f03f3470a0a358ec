"""Recurring tasks: the RRULE subset the API accepts, and the next due date when one is completed.

The rule is evaluated with python-dateutil's rrule, in UTC (the contract's reckoning: the same UTC time of
day, BYDAY on UTC weekdays; docs/tasks.md says why UTC and not a stored zone). The series starts at the
task's current ``due_at``; completing moves ``due_at`` to the first occurrence after both the old due
date and now. A COUNT is rewritten to the occurrences still left, so the rule stays self-contained.

Bounded time however old the due date: dateutil walks a rule period by period from its start, so a daily
rule due 20 years ago would take 7,300 steps (a one-second rule, millions: FREQ=SECONDLY is refused
anyway). Before asking dateutil, the start jumps forward by whole periods (INTERVAL days, weeks, months
or years) to just before now; the parts that dateutil would otherwise take from the start date (the
weekday, the day of the month, the month) are written into the rule first, so the jump cannot change
which dates match. With a COUNT (at most 1,000) there is nothing to jump: it is walked as is.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from dateutil import rrule
from dateutil.relativedelta import relativedelta

from shared.errors import ValidationFailed

FREQUENCIES = {"DAILY": rrule.DAILY, "WEEKLY": rrule.WEEKLY, "MONTHLY": rrule.MONTHLY, "YEARLY": rrule.YEARLY}
PARTS = ("FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "BYMONTH", "COUNT", "UNTIL")
MAX_COUNT = 1000
MAX_INTERVAL = 1000
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_BYDAY = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
_UNTIL = re.compile(r"^\d{8}T\d{6}Z$")
_INT_LIST = re.compile(r"^[+-]?\d{1,2}(,[+-]?\d{1,2})*$")
# Common rules the pages offer by name (no RRULE syntax to type).
PRESETS = {
    "daily": "FREQ=DAILY",
    "weekdays": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
    "weekly": "FREQ=WEEKLY",
    "monthly": "FREQ=MONTHLY",
    "yearly": "FREQ=YEARLY",
}


def _fail(message: str) -> ValidationFailed:
    return ValidationFailed({"recurrence": [message]})


def parse(rule: str) -> dict[str, str]:
    """The rule's parts, checked against the subset (RRULE: prefix allowed); else ValidationFailed."""
    text = rule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    parts: dict[str, str] = {}
    for item in text.split(";"):
        name, sep, value = item.partition("=")
        name = name.strip().upper()
        if not sep or not value:
            raise _fail(f"'{item[:40]}' is not NAME=VALUE.")
        if name not in PARTS:
            raise _fail(f"{name[:40]} is not supported; use only {', '.join(PARTS)}.")
        if name in parts:
            raise _fail(f"{name} is given twice.")
        parts[name] = value.strip().upper()
    _check_values(parts)
    return parts


def _numbers(parts: dict[str, str], name: str, low: int, high: int, negative: bool) -> bool:
    return _INT_LIST.match(parts[name]) is not None and all(
        low <= abs(int(n)) <= high and (negative or int(n) > 0) for n in parts[name].split(","))


def _check_values(parts: dict[str, str]) -> None:
    freq = parts.get("FREQ")
    if freq not in FREQUENCIES:
        raise _fail("FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY.")
    if "COUNT" in parts and "UNTIL" in parts:
        raise _fail("COUNT and UNTIL cannot both be given.")
    if "COUNT" in parts and not (parts["COUNT"].isdigit() and 1 <= int(parts["COUNT"]) <= MAX_COUNT):
        raise _fail(f"COUNT must be 1..{MAX_COUNT}.")
    if "INTERVAL" in parts and not (parts["INTERVAL"].isdigit() and 1 <= int(parts["INTERVAL"]) <= MAX_INTERVAL):
        raise _fail(f"INTERVAL must be 1..{MAX_INTERVAL}.")
    if "UNTIL" in parts and not _UNTIL.match(parts["UNTIL"]):
        raise _fail("UNTIL must be a UTC date-time, e.g. 20271231T235959Z.")
    if "BYDAY" in parts and not all(_BYDAY.match(day) for day in parts["BYDAY"].split(",")):
        raise _fail("BYDAY must list weekdays, e.g. MO,TH (or 1MO, -1FR in a monthly or yearly rule).")
    if "BYMONTHDAY" in parts and not _numbers(parts, "BYMONTHDAY", 1, 31, negative=True):
        raise _fail("BYMONTHDAY must list days from 1 to 31 (or -1 for the last day).")
    if "BYMONTH" in parts and not _numbers(parts, "BYMONTH", 1, 12, negative=False):
        raise _fail("BYMONTH must list months from 1 to 12.")
    numbered = [int(day[:-2]) for day in parts.get("BYDAY", "").split(",") if day[:-2]]
    if numbered and (freq not in ("MONTHLY", "YEARLY") or not all(1 <= abs(n) <= 53 for n in numbered)):
        raise _fail("A numbered weekday (1MO, -1FR) fits only a monthly or yearly rule.")


def _text(parts: dict[str, str]) -> str:
    return ";".join(f"{name}={parts[name]}" for name in PARTS if name in parts)


def _until(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def _build(parts: dict[str, str], start: datetime, horizon: datetime | None = None) -> rrule.rrule:
    """The rrule from checked parts, built directly: dateutil's text parser costs ~0.3 ms a rule (it parses
    UNTIL with its general date parser), which a completion would pay on the event loop."""
    kwargs: dict[str, object] = {"dtstart": start, "interval": int(parts.get("INTERVAL", "1"))}
    if "BYDAY" in parts:
        days = []
        for token in parts["BYDAY"].split(","):
            day = getattr(rrule, token[-2:])
            days.append(day(int(token[:-2])) if token[:-2] else day)
        kwargs["byweekday"] = days
    for name, key in (("BYMONTHDAY", "bymonthday"), ("BYMONTH", "bymonth")):
        if name in parts:
            kwargs[key] = [int(n) for n in parts[name].split(",")]
    if "COUNT" in parts:
        kwargs["count"] = int(parts["COUNT"])
    if "UNTIL" in parts:
        kwargs["until"] = _until(parts["UNTIL"])
    if horizon is not None and ("until" not in kwargs or kwargs["until"] > horizon):  # type: ignore[operator]
        kwargs["until"] = horizon
    try:
        return rrule.rrule(FREQUENCIES[parts["FREQ"]], **kwargs)  # type: ignore[arg-type]
    except (ValueError, TypeError, OverflowError) as exc:
        raise _fail(f"Not a valid rule: {exc}.") from None


def normalise(rule: str, due_at: datetime | None) -> str:
    """The rule as stored (canonical part order, upper case) after a full check against its start."""
    parts = parse(rule)
    if due_at is None:
        raise ValidationFailed({"due_at": ["A recurring task needs a due date."]})
    _build(parts, due_at)
    return _text(parts)


def _pinned(parts: dict[str, str], start: datetime) -> dict[str, str]:
    """The parts dateutil would take from the start date, written out, so moving the start keeps them."""
    pinned = dict(parts)
    freq = parts["FREQ"]
    by_day, by_monthday = "BYDAY" in parts, "BYMONTHDAY" in parts
    if freq == "WEEKLY" and not by_day:
        pinned["BYDAY"] = WEEKDAYS[start.weekday()]
    elif freq == "MONTHLY" and not by_day and not by_monthday:
        pinned["BYMONTHDAY"] = str(start.day)
    elif freq == "YEARLY" and not by_day and not by_monthday:
        pinned.setdefault("BYMONTH", str(start.month))
        pinned["BYMONTHDAY"] = str(start.day)
    return pinned


def _periods_between(freq: str, start: datetime, end: datetime) -> int:
    if freq == "DAILY":
        return (end - start).days
    if freq == "WEEKLY":
        return (end - start).days // 7
    months = (end.year - start.year) * 12 + end.month - start.month
    return months if freq == "MONTHLY" else months // 12


def _shift(freq: str, start: datetime, periods: int) -> datetime:
    if freq == "DAILY":
        return start + timedelta(days=periods)
    if freq == "WEEKLY":
        return start + timedelta(weeks=periods)
    return start + (relativedelta(months=periods) if freq == "MONTHLY" else relativedelta(years=periods))


def next_due(rule: str, due_at: datetime, now: datetime | None = None) -> tuple[datetime, str] | None:
    """The next due date after ``due_at`` and after ``now``, and the rule to store with it; None when
    the series has ended (the task then completes as usual)."""
    now = now or datetime.now(timezone.utc)
    parts = parse(rule)
    after = max(due_at, now)
    if "COUNT" in parts:
        series = _build(parts, due_at)
        for index, moment in enumerate(series):  # at most COUNT (<= 1,000) steps
            if moment > after:
                left = int(parts["COUNT"]) - index
                return moment, _text({**parts, "COUNT": str(left)})
        return None
    pinned = _pinned(parts, due_at)
    interval = int(parts.get("INTERVAL", "1"))
    # Whole intervals to skip, one short of now, so the jumped start is never past the answer.
    skip = max(0, _periods_between(parts["FREQ"], due_at, after) // interval - 1) * interval
    start = _shift(parts["FREQ"], due_at, skip)
    # An impossible date (BYMONTH=2;BYMONTHDAY=30) would make dateutil search until year 9999: cap it.
    horizon = after + relativedelta(years=max(0, min(10 + 8 * interval, 9998 - after.year)))
    moment = _build(pinned, start, horizon).after(after)
    if moment is None:
        return None
    return moment, _text(parts)


def upcoming(rule: str, due_at: datetime, count: int = 5) -> list[datetime]:
    """The next few occurrences from ``due_at`` on (for the pages), at most ``count``."""
    moments, current, current_rule = [due_at], due_at, rule
    while len(moments) < count:
        following = next_due(current_rule, current, now=current)
        if following is None:
            break
        current, current_rule = following
        moments.append(current)
    return moments
