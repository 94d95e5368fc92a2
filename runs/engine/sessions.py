"""Trading sessions from exchange_calendars, as plain int64 arrays (ns since the epoch, UTC).

The engine needs three questions answered fast: which session does a bar belong to, when does
it close, and in which session does an order placed at time t first work. Each is one
`searchsorted` over these arrays.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

import exchange_calendars
import numpy as np

from strategies.sdk.enums import AssetType

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND
# Used when the caller names no calendar: each asset type trades on its usual exchange hours.
DEFAULT_CALENDARS = {AssetType.EQUITY: "XNYS", AssetType.FUTURE: "CMES"}


@dataclass(frozen=True, eq=False)
class Sessions:
    name: str
    opens: np.ndarray  # int64 ns, ascending
    closes: np.ndarray  # int64 ns, ascending
    days: np.ndarray  # int64 days since the epoch of each session's label (its trading date)
    # The same as Python ints: one bisect per order is far cheaper than a numpy call.
    open_list: list[int] = field(init=False, repr=False)
    close_list: list[int] = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "open_list", self.opens.tolist())
        object.__setattr__(self, "close_list", self.closes.tolist())

    def __len__(self) -> int:
        return len(self.close_list)

    def working_session(self, time_ns: int) -> int:
        """Index of the session an order placed at `time_ns` works in: the first one still open
        (close > t). An order placed at or after a close works in the next session.
        Returns len(self) when the calendar has no session left."""
        return bisect_right(self.close_list, time_ns)


def calendar_for(asset_type: AssetType, calendar: str | None) -> str:
    return calendar or DEFAULT_CALENDARS[asset_type]


@lru_cache(maxsize=32)
def _sessions_for_years(name: str, first_year: int, last_year: int) -> Sessions:
    try:
        calendar = exchange_calendars.get_calendar(name, start=f"{first_year}-01-01", end=f"{last_year}-12-31")
    except exchange_calendars.errors.InvalidCalendarName:
        raise ValueError(
            f"unknown exchange calendar '{name}': use a name exchange_calendars knows, e.g. XNYS, CMES or 24/7"
        ) from None
    schedule = calendar.schedule
    return Sessions(
        name=name,
        opens=schedule["open"].values.astype("datetime64[ns]").view("int64"),
        closes=schedule["close"].values.astype("datetime64[ns]").view("int64"),
        days=schedule.index.values.astype("datetime64[D]").astype("int64"),
    )


def sessions_between(name: str, start: datetime, end: datetime) -> Sessions:
    """The calendar's sessions covering [start, end], padded by a year each side (cached per
    whole years, so runs over similar windows share one calendar build)."""
    return _sessions_for_years(name, start.year - 1, end.year + 1)
