"""Seeded synthetic bars along real exchange sessions (Django-free).

No public package ships real intraday bars, so demos and tests use a geometric random walk laid
on the exchange calendar: holidays have no bars, early closes end early, and the same seed
gives the same bars. The data is labelled synthetic wherever it is stored.

Within a bar the path is a Brownian bridge from open to close; high and low are drawn from the
exact distribution of that bridge's maximum and minimum, so every bar is consistent
(high >= max(open, close), low <= min(open, close)) before and after rounding to the tick.
"""

from __future__ import annotations

import zlib
from datetime import date

import numpy as np
import pandas as pd

from securities.bar_arrays import BarArrays
from securities.csv_bars import exchange_calendar

BAR_SECONDS = {"second": 1, "minute": 60, "hour": 3600}  # "day" is one bar per session
SESSIONS_PER_YEAR = 252
# Share of a day's variance that arrives between sessions (overnight and weekend gaps).
GAP_VARIANCE_SHARE = 0.2
# Bar-to-bar noise of volume around its intraday profile (log-normal sigma).
VOLUME_NOISE = 0.5


def _intervals(calendar, sessions: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trading intervals (start ns, end ns, session position) of `sessions`, split at lunch breaks."""

    def ns(series):
        return series.loc[sessions].to_numpy(dtype="datetime64[ns]").astype(np.int64)

    opens, closes = ns(calendar.opens), ns(calendar.closes)
    has_break = calendar.break_starts.loc[sessions].notna().to_numpy()
    positions = np.arange(len(sessions))
    if not has_break.any():
        return opens, closes, positions
    break_starts, break_ends = ns(calendar.break_starts), ns(calendar.break_ends)
    starts = np.concatenate([opens, break_ends[has_break]])
    ends = np.concatenate([np.where(has_break, break_starts, closes), closes[has_break]])
    owners = np.concatenate([positions, positions[has_break]])
    order = np.argsort(starts, kind="stable")
    return starts[order], ends[order], owners[order]


def _round_to_tick(prices: np.ndarray, tick_size: float) -> np.ndarray:
    # The outer round removes binary noise such as 123.45000000000002.
    return np.maximum(np.round(np.round(prices / tick_size) * tick_size, 10), tick_size)


def synthetic_minute_bars(
    *,
    symbol: str,
    start_date: date | str,
    end_date: date | str,
    seed: int,
    start_price: float,
    calendar: str = "XNYS",
    annual_volatility: float = 0.25,
    drift: float = 0.05,
    frequency: str = "minute",
    tick_size: float = 0.01,
    average_daily_volume: float = 1_000_000,
) -> BarArrays:
    """Bars for every trading session of `calendar` in [start_date, end_date] (inclusive).

    Bars open on the session's grid (open, open + 1 bar, …); the last bar of a session may be
    shorter when the session length is not a whole number of bars (hourly bars on XNYS end with
    a half hour). `frequency` is second, minute, hour or day. The same (seed, symbol) gives the
    same bars.
    """
    if frequency not in (*BAR_SECONDS, "day"):
        raise ValueError(f"frequency {frequency!r} is not one of second, minute, hour, day")
    if start_price <= 0 or tick_size <= 0 or annual_volatility < 0:
        raise ValueError("start_price and tick_size must be positive and annual_volatility not negative")
    start, end = pd.Timestamp(start_date), pd.Timestamp(end_date)
    if end < start:
        raise ValueError(f"end_date {end.date()} is before start_date {start.date()}")
    exchange = exchange_calendar(calendar, start, end)
    sessions = exchange.sessions_in_range(start, end)
    if len(sessions) == 0:
        return BarArrays.empty()

    starts, ends, owners = _intervals(exchange, sessions)
    session_seconds = np.bincount(owners, weights=(ends - starts) / 1e9, minlength=len(sessions))
    if frequency == "day":
        first_of_interval = np.r_[True, owners[1:] != owners[:-1]]
        times = starts[first_of_interval]
        owner = owners[first_of_interval]
        durations = session_seconds.copy()
        elapsed_before = np.zeros(len(times))
    else:
        step = BAR_SECONDS[frequency] * 1_000_000_000
        counts = -(-(ends - starts) // step)
        interval_of_bar = np.repeat(np.arange(len(starts)), counts)
        index_in_interval = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        times = starts[interval_of_bar] + index_in_interval * step
        owner = owners[interval_of_bar]
        durations = np.minimum(step, ends[interval_of_bar] - times) / 1e9
        # Trading seconds of the session before each bar (earlier intervals of a split session count).
        interval_seconds = (ends - starts) / 1e9
        before_interval = np.zeros(len(starts))
        for position in range(1, len(starts)):
            if owners[position] == owners[position - 1]:
                before_interval[position] = before_interval[position - 1] + interval_seconds[position - 1]
        elapsed_before = before_interval[interval_of_bar] + (times - starts[interval_of_bar]) / 1e9

    rng = np.random.default_rng([seed, zlib.crc32(symbol.upper().encode())])
    bars = len(times)
    day_fraction = durations / session_seconds[owner]
    daily_variance = annual_volatility**2 / SESSIONS_PER_YEAR
    bar_sigma = np.sqrt(daily_variance * (1 - GAP_VARIANCE_SHARE) * day_fraction)
    bar_drift = (drift - annual_volatility**2 / 2) / SESSIONS_PER_YEAR * day_fraction
    returns = bar_drift + bar_sigma * rng.standard_normal(bars)
    session_starts = np.r_[False, owner[1:] != owner[:-1]]
    gaps = np.where(session_starts, np.sqrt(daily_variance * GAP_VARIANCE_SHARE) * rng.standard_normal(bars), 0.0)

    log_close = np.log(start_price) + np.cumsum(gaps + returns)
    log_open = log_close - returns
    spread = (log_close - log_open) ** 2
    log_high = (log_open + log_close + np.sqrt(spread - 2 * bar_sigma**2 * np.log(rng.random(bars)))) / 2
    log_low = (log_open + log_close - np.sqrt(spread - 2 * bar_sigma**2 * np.log(rng.random(bars)))) / 2

    open_ = _round_to_tick(np.exp(log_open), tick_size)
    close = _round_to_tick(np.exp(log_close), tick_size)
    high = np.maximum(_round_to_tick(np.exp(log_high), tick_size), np.maximum(open_, close))
    low = np.minimum(_round_to_tick(np.exp(log_low), tick_size), np.minimum(open_, close))

    # U-shaped intraday volume: the profile 1 + 2(2u - 1)^2 integrates to 5/3 over a session.
    u0 = elapsed_before / session_seconds[owner]
    u1 = u0 + day_fraction
    share = ((u1 - u0) + ((2 * u1 - 1) ** 3 - (2 * u0 - 1) ** 3) / 3) / (5 / 3)
    noise = rng.lognormal(mean=-(VOLUME_NOISE**2) / 2, sigma=VOLUME_NOISE, size=bars)
    volume = np.rint(average_daily_volume * share * noise)

    return BarArrays(times, open_, high, low, close, volume)
