"""Israel's holidays as an Israeli business keeps them (pure, from the ``holidays`` package's calendar).

* A holiday (``holidays``' public holidays of Israel: Rosh Hashanah, Yom Kippur, Sukkot, Simchat
  Torah, the first and seventh days of Pesach, Shavuot, Independence Day): closed all day.
* Its eve (the day before a holiday that is not a holiday itself, Independence Day's excepted: the
  eve of that one is Memorial Day, a working day): a short day, like a Friday (``eve_hours``,
  ``08:00-13:00`` unless the profile says otherwise).
* Chol HaMoed (the days between the first and last days of Sukkot and Pesach): as the business
  says, ``open`` (its usual hours, the default), ``short`` (the eve hours) or ``closed``.

The dates come from the package's Hebrew-calendar tables, never from a hand-written list; they are
computed once per year asked.
"""
from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import holidays

HOLIDAY, EVE, CHOL_HAMOED = "holiday", "eve", "chol_hamoed"
CHOL_HAMOED_CHOICES = ("open", "short", "closed")
NO_EVE = ("Independence Day",)


@lru_cache(maxsize=16)
def _year(year: int) -> dict[date, tuple[str, str]]:
    days: dict[date, tuple[str, str]] = {}
    public = holidays.country_holidays("IL", years=[year - 1, year, year + 1], language="en_US")
    optional = holidays.country_holidays("IL", years=[year - 1, year, year + 1], categories=("optional",),
                                         language="en_US")
    for day, name in optional.items():
        if "holiday" in name.lower() and ("pesach" in name.lower() or "sukkot" in name.lower()):
            days[day] = (CHOL_HAMOED, name)
    for day, name in public.items():
        if not any(n in name for n in NO_EVE):
            eve = day - timedelta(days=1)
            if eve not in public:
                days[eve] = (EVE, f"eve of {name}")
    for day, name in public.items():
        days[day] = (HOLIDAY, name)
    return {d: v for d, v in days.items() if d.year == year}


def kind_of(day: date) -> tuple[str, str] | None:
    """(``holiday``, ``eve`` or ``chol_hamoed``; the holiday's name), or None for an ordinary day."""
    return _year(day.year).get(day)
