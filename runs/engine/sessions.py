"""Trading sessions from exchange_calendars, as plain int64 arrays (ns since the epoch, UTC).

The engine needs three questions answered fast: which session does a bar belong to, when does
it close, and in which session does an order placed at time t first work. Each is one
`searchsorted` over these arrays.

Building a calendar costs about half a second (importing exchange_calendars and pandas, then
computing a decade of holidays and special closes), more than a short backtest. So the arrays
are also kept on disk when `cache_dir` is set (the runs app sets it), keyed by the calendar,
the years and the installed exchange_calendars version, whose rules they come from.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

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


cache_dir: Path | None = None  # where built sessions are kept between processes; None: not kept


@lru_cache(maxsize=32)
def _sessions_for_years(name: str, first_year: int, last_year: int) -> Sessions:
    cached = _cache_file(name, first_year, last_year)
    if cached is not None:
        try:
            with np.load(cached) as arrays:
                return Sessions(name=name, opens=arrays["opens"], closes=arrays["closes"], days=arrays["days"])
        except (OSError, ValueError, KeyError):
            pass  # absent or unreadable: build it
    sessions = _build_sessions(name, first_year, last_year)
    if cached is not None:
        _write_atomically(cached, sessions)
    return sessions


def _build_sessions(name: str, first_year: int, last_year: int) -> Sessions:
    import exchange_calendars  # costly to import: only when a calendar is built

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


def _cache_file(name: str, first_year: int, last_year: int) -> Path | None:
    if cache_dir is None:
        return None
    safe_name = "".join(c if c.isalnum() else "-" for c in name)
    return Path(cache_dir) / f"sessions-{safe_name}-{first_year}-{last_year}-xcals{version('exchange_calendars')}.npz"


def _write_atomically(path: Path, sessions: Sessions) -> None:
    """Written whole or not at all (a concurrent reader never sees half a file); a cache that
    cannot be written only costs the next process a build."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(descriptor, "wb") as file:
            np.savez(file, opens=sessions.opens, closes=sessions.closes, days=sessions.days)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)  # a half-written file is not left behind


def sessions_between(name: str, start: datetime, end: datetime) -> Sessions:
    """The calendar's sessions covering [start, end], padded by a year each side (cached per
    whole years, so runs over similar windows share one calendar build)."""
    return _sessions_for_years(name, start.year - 1, end.year + 1)
