"""Performance metrics of a run, from its equity curve and fills. Django-free: plain Python + numpy.

Conventions (the console, the API and the study tables all read these numbers, so they are fixed here):

- **Daily resampling.** Return-based metrics use the equity curve resampled to one close per
  UTC calendar date (the last equity point of each date). The very first equity point is kept
  as the base the first return is measured from, so the daily returns compound exactly to
  `total_return` even when a run starts mid-day. With one point per day nothing changes.
- **Annualisation.** 252 periods per year unless `periods_per_year` is given (e.g. 365 for a
  market that trades every day). `risk_free_rate` is an *annual* rate, turned into a per-period
  rate as (1 + r) ** (1 / periods_per_year) - 1; Sharpe subtracts it, Sortino uses it as the
  required return, alpha/beta use it as empyrical's `risk_free`.
- **Agreement with empyrical.** `annual_volatility`, `sharpe`, `sortino`, `max_drawdown`, `alpha`
  and `beta` are empyrical(-reloaded)'s definitions applied to the daily return series.
- **The deliberate difference: CAGR.** empyrical's `cagr` counts years as the number of returns
  divided by the annualisation factor; here years are the calendar time between the first and
  the last equity point (365.25 days a year), so weekends, holidays and gaps without data count
  as the time they really were. `calmar` is this CAGR over |max drawdown|, so it differs from
  empyrical's `calmar_ratio` by the same factor; both agree exactly when the series has one
  point per calendar day and `periods_per_year=365.25`.
- **Annual growth needs a month.** CAGR (and Calmar, built on it) is None for a run spanning
  less than `MIN_DAYS_TO_ANNUALISE` calendar days: compounding a few hours or days of return
  over a year gives meaningless figures (2.5 % in a day is ~10^12 % a year). Total return,
  drawdown and the trade statistics are shown for any span.
- **Undefined is None.** A metric that has no meaning for the data (Sharpe of a constant series,
  profit factor without losing trades, anything of an empty series) is None — never NaN or inf,
  so the dict serialises to JSON as is.
"""

from __future__ import annotations

import contextlib
import gc
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

import numpy as np

TRADING_DAYS_PER_YEAR = 252
DAYS_PER_YEAR = 365.25
NANOSECONDS_PER_DAY = 86_400 * 1_000_000_000
MIN_DAYS_TO_ANNUALISE = 30
# A standard deviation of daily returns below this is floating-point noise (a cent on ten
# billion), e.g. from a series growing at a constant rate; ratios over it would be meaningless.
NOISE_STD = 1e-12
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RoundTrip(NamedTuple):
    """One closed trade: the entry to exit of (part of) a position in one symbol.

    `quantity` is signed like a position: positive for a long, negative for a short.
    `pnl` is net of the entry and exit commissions attributable to this quantity.
    (A named tuple: immutable, and a backtest makes tens of thousands of them.)
    """

    symbol: str
    entry_time: datetime
    exit_time: datetime
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal
    pnl: Decimal


class FillLike(Protocol):
    time: datetime
    symbol: str
    asset_type: Any
    side: str  # "buy" | "sell"
    quantity: Decimal
    price: Decimal
    commission: Decimal


class _OpenLot:
    __slots__ = ("time", "quantity", "price", "commission")

    def __init__(self, time: datetime, quantity: Decimal, price: Decimal, commission: Decimal):
        self.time = time
        self.quantity = quantity  # signed, remaining
        self.price = price
        self.commission = commission  # entry commission not yet attributed to a round trip


def _plain(value: Any) -> Any:
    # Enum members hash by name, not by value, so ("ES", AssetType.FUTURE) would miss a
    # ("ES", "future") key; compare asset types by their plain value.
    return getattr(value, "value", value)


def _multipliers_by_plain_key(multipliers: Mapping[tuple[str, Any], Decimal] | None) -> dict[tuple[str, Any], Decimal]:
    """(symbol, plain asset type) -> contract multiplier as Decimal."""
    return {(symbol, _plain(asset_type)): Decimal(m) for (symbol, asset_type), m in (multipliers or {}).items()}


def round_trips_from_fills(
    fills: Iterable[FillLike], multipliers: Mapping[tuple[str, Any], Decimal] | None = None
) -> list[RoundTrip]:
    """Match fills into round trips, first in first out, per (symbol, asset type).

    A fill against the open position closes the oldest lots first, one round trip per lot it
    touches (so a partial close yields a round trip for the closed part only); whatever is left
    of the fill after the position reaches zero opens a position the other way (a flip).
    Commissions are attributed pro rata to quantity. `multipliers` maps (symbol, asset_type) to
    the contract multiplier (futures); missing entries mean 1. Positions still open at the end
    produce no round trip. Round trips come out in order of exit (fills are taken in time order).
    """
    contract_multipliers = _multipliers_by_plain_key(multipliers)
    lots_by_instrument: dict[tuple[str, Any], deque[_OpenLot]] = {}
    round_trips: list[RoundTrip] = []
    add_round_trip = round_trips.append
    new_round_trip = tuple.__new__  # skips RoundTrip's Python-level __new__: one per closed lot
    indexed = list(enumerate(fills))
    indexed.sort(key=lambda pair: pair[1].time)  # stable: fills at the same time keep their order
    plain_values = {}  # enum member (or text) -> its plain value: an enum's .value is slow to read
    for index, fill in indexed:
        side = plain_values.get(fill.side)
        if side is None:
            side = plain_values[fill.side] = _plain(fill.side)
        if side != "buy" and side != "sell":
            raise ValueError(f"fills[{index}] ({fill.symbol}): side is {fill.side!r}; use 'buy' or 'sell'.")
        quantity = fill.quantity
        if quantity <= 0:
            raise ValueError(f"fills[{index}] ({fill.symbol}): quantity is {quantity}; it must be positive.")
        asset_type = plain_values.get(fill.asset_type)
        if asset_type is None:
            asset_type = plain_values[fill.asset_type] = _plain(fill.asset_type)
        instrument = (fill.symbol, asset_type)
        lots = lots_by_instrument.get(instrument)
        if lots is None:
            lots = lots_by_instrument[instrument] = deque()
        buying = side == "buy"
        remaining = quantity
        exit_commission_left = commission = fill.commission
        price, time = fill.price, fill.time
        while lots:
            lot = lots[0]
            lot_quantity = lot.quantity
            if (lot_quantity > 0) == buying:
                break  # the fill adds to the position
            lot_size = -lot_quantity if lot_quantity < 0 else lot_quantity
            if remaining >= lot_size:  # the whole lot closes
                closed, entry_commission = lot_size, lot.commission
            else:
                closed, entry_commission = remaining, lot.commission * remaining / lot_size
            exit_commission = exit_commission_left if closed == remaining else commission * closed / quantity
            signed = closed if lot_quantity > 0 else -closed
            gross = (price - lot.price) * signed
            multiplier = contract_multipliers.get(instrument)
            if multiplier is not None:
                gross *= multiplier
            add_round_trip(new_round_trip(RoundTrip, (
                fill.symbol, lot.time, time, signed, lot.price, price, gross - entry_commission - exit_commission
            )))
            exit_commission_left -= exit_commission
            remaining -= closed
            if closed == lot_size:
                lots.popleft()
            else:
                lot.commission -= entry_commission
                lot.quantity = lot_quantity - signed
            if not remaining:
                break
        if remaining > 0:
            lots.append(_OpenLot(time, remaining if buying else -remaining, price, exit_commission_left))
    return round_trips


def drawdown_series(equity_values: np.ndarray) -> np.ndarray:
    """Fraction below the running peak at each point (0 at a new high, -0.25 when 25 % under).

    NaN where the running peak is not positive: with no capital there is nothing to draw down.
    """
    values = np.asarray(equity_values, dtype=np.float64)
    if values.size == 0:
        return values.copy()
    peaks = np.maximum.accumulate(values)
    drawdowns = np.full(values.shape, np.nan)
    funded = peaks > 0
    drawdowns[funded] = values[funded] / peaks[funded] - 1.0
    return drawdowns


def downsample(times: np.ndarray, values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` points for a chart: the first, the last, and the lowest and the
    highest point of each of (max_points - 2) // 2 equal buckets in between, in time order.

    Spikes are not smoothed away as with every-nth sampling: the series' highest and lowest
    points always survive, and so does each bucket's.
    """
    times = np.asarray(times)
    values = np.asarray(values)
    if len(times) != len(values):
        raise ValueError(f"times has {len(times)} points and values {len(values)}; they must be the same length.")
    if max_points < 4:
        raise ValueError(f"max_points is {max_points}; it must be at least 4 (first, last, one bucket's min and max).")
    count = len(values)
    if count <= max_points:
        return times.copy(), values.copy()
    inner = count - 2
    bucket_count = (max_points - 2) // 2
    bucket = np.arange(inner) * bucket_count // inner  # equal buckets, in time order
    # Sorted by (bucket, value), each bucket's first entry is its lowest point and its last the highest.
    by_value = np.lexsort((values[1:-1], bucket))
    starts = np.searchsorted(bucket[by_value], np.arange(bucket_count))
    ends = np.append(starts[1:], inner) - 1
    indices = np.unique(np.concatenate(([0, count - 1], by_value[starts] + 1, by_value[ends] + 1)))
    return times[indices], values[indices]


def _number(value: float | np.floating | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _daily_indices(equity_times: np.ndarray) -> np.ndarray:
    """Indices of the base point and of the last point of each UTC date (see module docstring)."""
    days = np.floor_divide(equity_times, NANOSECONDS_PER_DAY)
    day_closes = np.append(np.flatnonzero(np.diff(days) != 0), len(days) - 1)
    if day_closes[0] != 0:
        day_closes = np.insert(day_closes, 0, 0)
    return day_closes


def _simple_returns(values: np.ndarray) -> np.ndarray | None:
    """Period returns, or None when a base is not positive (returns of no capital are undefined)."""
    if np.any(values[:-1] <= 0):
        return None
    return values[1:] / values[:-1] - 1.0


def _max_drawdown_duration_days(times: np.ndarray, values: np.ndarray) -> float | None:
    """Longest time from a peak until the value is back at it (or the last point, if never)."""
    if len(values) == 0:
        return None
    longest = 0
    peak, peak_time, underwater = values[0], times[0], False
    for time, value in zip(times[1:], values[1:], strict=True):
        if value >= peak:
            if underwater:
                longest = max(longest, int(time - peak_time))
                underwater = False
            peak, peak_time = value, time
        else:
            underwater = True
    if underwater:
        longest = max(longest, int(times[-1] - peak_time))
    return longest / NANOSECONDS_PER_DAY


def _exposure_from_round_trips(round_trips: list[RoundTrip], start_ns: int, end_ns: int) -> float | None:
    """Fraction of [start, end] covered by at least one round trip (open positions not counted)."""
    if end_ns <= start_ns:
        return None
    intervals = sorted(
        (
            max(_to_ns(trip.entry_time, "round_trips.entry_time"), start_ns),
            min(_to_ns(trip.exit_time, "round_trips.exit_time"), end_ns),
        )
        for trip in round_trips
    )
    covered = 0
    current_start = current_end = None
    for interval_start, interval_end in intervals:
        if interval_end <= interval_start:
            continue
        if current_end is None or interval_start > current_end:
            if current_end is not None:
                covered += current_end - current_start
            current_start, current_end = interval_start, interval_end
        else:
            current_end = max(current_end, interval_end)
    if current_end is not None:
        covered += current_end - current_start
    return covered / (end_ns - start_ns)


def _to_ns(moment: datetime, field: str) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{field} {moment.isoformat()} has no time zone; pass UTC-aware datetimes.")
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _validated_series(equity_times: np.ndarray, equity_values: np.ndarray, benchmark_values: np.ndarray | None):
    times = np.asarray(equity_times, dtype=np.int64)
    values = np.asarray(equity_values, dtype=np.float64)
    if times.ndim != 1 or values.ndim != 1:
        raise ValueError("equity_times and equity_values must be one-dimensional arrays.")
    if len(times) != len(values):
        raise ValueError(
            f"equity_times has {len(times)} points and equity_values {len(values)}; they must be the same length."
        )
    backwards = np.flatnonzero(np.diff(times) < 0)
    if backwards.size:
        raise ValueError(
            f"equity_times must be ascending; index {backwards[0] + 1} is earlier than the point before it."
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(
            f"equity_values has a NaN or infinite value at index {np.flatnonzero(~np.isfinite(values))[0]}."
        )
    benchmark = None
    if benchmark_values is not None:
        benchmark = np.asarray(benchmark_values, dtype=np.float64)
        if benchmark.shape != values.shape:
            raise ValueError(
                f"benchmark_values has {len(benchmark)} points and equity_values {len(values)}; "
                "give the benchmark's value at each equity time."
            )
        if not np.all(np.isfinite(benchmark)):
            raise ValueError(
                f"benchmark_values has a NaN or infinite value at index {np.flatnonzero(~np.isfinite(benchmark))[0]}."
            )
    return times, values, benchmark


def metrics_from_fills(
    *,
    equity_times: np.ndarray,
    equity_values: np.ndarray,
    fills: list,
    multipliers: Mapping[tuple[str, Any], Decimal] | None = None,
    exposure_fraction: float | None = None,
    benchmark_values: np.ndarray | None = None,
) -> dict:
    """`compute_metrics` for an equity curve and the fills (FillLike) behind it: the round trips,
    commissions and traded notional (contracts at multiplier × price) come from the fills."""
    multipliers = multipliers or {}
    with _automatic_gc_paused():
        round_trips = round_trips_from_fills(fills, multipliers=multipliers)
    return compute_metrics(
        equity_times=equity_times,
        equity_values=equity_values,
        round_trips=round_trips,
        commissions=sum((fill.commission for fill in fills), Decimal(0)),
        traded_notional=_traded_notional(fills, multipliers),
        exposure_fraction=exposure_fraction,
        benchmark_values=benchmark_values,
    )


def _traded_notional(fills: list, multipliers: Mapping[tuple[str, Any], Decimal]) -> float:
    """Σ quantity × price × contract multiplier; the multipliers keyed by plain asset type."""
    plain_multipliers = _multipliers_by_plain_key(multipliers)
    multiplier_of = {}  # (symbol, asset type as the fills carry it) -> multiplier: an enum's .value is slow to read
    total = Decimal(0)
    for fill in fills:
        key = (fill.symbol, fill.asset_type)
        multiplier = multiplier_of.get(key)
        if multiplier is None:
            multiplier = multiplier_of[key] = plain_multipliers.get((fill.symbol, _plain(fill.asset_type)), 1)
        total += fill.quantity * fill.price * multiplier
    return float(total)


@contextlib.contextmanager
def _automatic_gc_paused():
    """Matching a backtest's fills builds tens of thousands of round trips that all live on:
    each automatic collection pass meanwhile walks every tracked object of the process (a
    third of the metrics' time on a million-bar run) and finds nothing, as they hold no cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def compute_metrics(
    *,
    equity_times: np.ndarray,
    equity_values: np.ndarray,
    round_trips: list[RoundTrip],
    commissions: Decimal | float = 0,
    traded_notional: float = 0,
    exposure_fraction: float | None = None,
    benchmark_values: np.ndarray | None = None,
    periods_per_year: float | None = None,
    risk_free_rate: float = 0.0,
) -> dict:
    """Headline metrics of a run (conventions in the module docstring).

    `equity_times` are int64 nanoseconds since the epoch, UTC, ascending; `equity_values` the
    portfolio value at each. `benchmark_values` (optional) is the benchmark's value at the same
    times. `exposure` is `exposure_fraction` when given, otherwise the share of the run's time
    covered by the closed round trips. `turnover` is traded notional over the average daily
    equity for the whole run, *not* annualised (1.0 = the portfolio traded its size once).
    `max_drawdown_duration_days` is measured on the daily closes, like `max_drawdown`.
    """
    times, values, benchmark = _validated_series(equity_times, equity_values, benchmark_values)
    if periods_per_year is None:
        periods_per_year = TRADING_DAYS_PER_YEAR
    if not periods_per_year > 0:
        raise ValueError(f"periods_per_year is {periods_per_year}; it must be positive.")
    if exposure_fraction is not None and not 0 <= exposure_fraction <= 1:
        raise ValueError(f"exposure_fraction is {exposure_fraction}; it must be between 0 and 1.")
    if risk_free_rate <= -1:
        raise ValueError(f"risk_free_rate is {risk_free_rate}; it is an annual rate and must be above -1.")

    winners = [trip.pnl for trip in round_trips if trip.pnl > 0]
    losers = [trip.pnl for trip in round_trips if trip.pnl < 0]
    gross_loss = -sum(losers, Decimal(0))
    metrics: dict[str, Any] = {
        "total_return": None,
        "cagr": None,
        "annual_volatility": None,
        "sharpe": None,
        "sortino": None,
        "max_drawdown": None,
        "max_drawdown_duration_days": None,
        "calmar": None,
        "win_rate": len(winners) / len(round_trips) if round_trips else None,
        "profit_factor": float(sum(winners, Decimal(0)) / gross_loss) if gross_loss > 0 else None,
        "trades": len(round_trips),
        "exposure": _number(exposure_fraction),
        "turnover": None,
        "commissions": float(commissions),
        "final_value": None,
        "start_value": None,
    }
    if benchmark is not None:
        metrics.update(benchmark_return=None, alpha=None, beta=None)
    if len(values) == 0:
        return metrics

    start_value, final_value = float(values[0]), float(values[-1])
    metrics["start_value"], metrics["final_value"] = start_value, final_value
    if start_value > 0:
        metrics["total_return"] = _number(final_value / start_value - 1.0)
    if exposure_fraction is None:
        metrics["exposure"] = _exposure_from_round_trips(round_trips, int(times[0]), int(times[-1]))

    daily = _daily_indices(times)
    daily_times, daily_values = times[daily], values[daily]
    average_equity = float(np.mean(daily_values))
    if average_equity > 0:
        metrics["turnover"] = _number(float(traded_notional) / average_equity)

    drawdowns = drawdown_series(daily_values)
    if not np.all(np.isnan(drawdowns)):
        metrics["max_drawdown"] = _number(np.nanmin(drawdowns))
        metrics["max_drawdown_duration_days"] = _max_drawdown_duration_days(daily_times, daily_values)

    days = (int(times[-1]) - int(times[0])) / NANOSECONDS_PER_DAY
    years = days / DAYS_PER_YEAR
    if days >= MIN_DAYS_TO_ANNUALISE and start_value > 0 and final_value >= 0:
        try:
            metrics["cagr"] = _number((final_value / start_value) ** (1.0 / years) - 1.0)
        except OverflowError:  # a large gain over minutes; no meaningful annual rate
            metrics["cagr"] = None
    if metrics["cagr"] is not None and metrics["max_drawdown"] is not None and metrics["max_drawdown"] < 0:
        metrics["calmar"] = _number(metrics["cagr"] / abs(metrics["max_drawdown"]))

    returns = _simple_returns(daily_values)
    risk_free = (1.0 + risk_free_rate) ** (1.0 / periods_per_year) - 1.0
    if returns is not None and len(returns) >= 2:
        metrics.update(_return_statistics(returns, periods_per_year, risk_free))
    if benchmark is not None:
        metrics.update(_benchmark_statistics(returns, benchmark, daily, periods_per_year, risk_free))
    return metrics


def _return_statistics(returns: np.ndarray, periods_per_year: float, risk_free: float) -> dict:
    """empyrical's annual_volatility, sharpe_ratio and sortino_ratio (required return = risk free)."""
    std = float(np.std(returns, ddof=1))
    excess = returns - risk_free
    excess_std = float(np.std(excess, ddof=1))
    downside = float(np.sqrt(np.mean(np.square(np.clip(excess, None, 0.0)))))
    mean_excess = float(np.mean(excess))
    return {
        "annual_volatility": _number(std * np.sqrt(periods_per_year)),
        "sharpe": _number(mean_excess / excess_std * np.sqrt(periods_per_year)) if excess_std > NOISE_STD else None,
        "sortino": _number(mean_excess * periods_per_year / (downside * np.sqrt(periods_per_year)))
        if downside > NOISE_STD
        else None,
    }


def _benchmark_statistics(
    returns: np.ndarray | None, benchmark: np.ndarray, daily: np.ndarray, periods_per_year: float, risk_free: float
) -> dict:
    """Benchmark total return, and empyrical's alpha_beta on the daily returns of both."""
    statistics: dict[str, float | None] = {"benchmark_return": None, "alpha": None, "beta": None}
    if benchmark[0] > 0:
        statistics["benchmark_return"] = _number(benchmark[-1] / benchmark[0] - 1.0)
    benchmark_returns = _simple_returns(benchmark[daily])
    if returns is None or benchmark_returns is None or len(returns) < 2:
        return statistics
    benchmark_residual = benchmark_returns - np.mean(benchmark_returns)
    benchmark_variance = float(np.mean(np.square(benchmark_residual)))
    if benchmark_variance < 1e-30:  # empyrical's threshold: a flat benchmark explains nothing
        return statistics
    beta = float(np.mean(benchmark_residual * returns)) / benchmark_variance
    alpha_per_period = float(np.mean((returns - risk_free) - beta * (benchmark_returns - risk_free)))
    statistics["beta"] = _number(beta)
    if alpha_per_period > -1:  # below -1 the compounded rate has no real value
        try:
            statistics["alpha"] = _number((1.0 + alpha_per_period) ** periods_per_year - 1.0)
        except OverflowError:
            statistics["alpha"] = None
    return statistics
