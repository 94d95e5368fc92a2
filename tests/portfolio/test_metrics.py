"""Performance metrics, checked against empyrical-reloaded on the same daily return series."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import empyrical
import numpy as np
import pandas as pd
import pytest

from portfolio.metrics import (
    RoundTrip,
    compute_metrics,
    downsample,
    drawdown_series,
    round_trips_from_fills,
)
from runs.engine.records import FillRecord
from strategies.sdk.enums import AssetType

RELATIVE = 1e-9
START = datetime(2024, 1, 2, 21, 0, tzinfo=UTC)


def ns(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def times_ns(moments) -> np.ndarray:
    return np.array([ns(moment) for moment in moments], dtype=np.int64)


def business_days(count: int) -> list[datetime]:
    return [moment.to_pydatetime() for moment in pd.bdate_range(START, periods=count, tz=UTC)]


def calendar_days(count: int) -> list[datetime]:
    return [START + timedelta(days=day) for day in range(count)]


def random_equity(count: int, seed: int, drift: float = 0.0004, volatility: float = 0.012) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100_000.0 * np.cumprod(1.0 + rng.normal(drift, volatility, count))


def metrics_for(moments, values, **kwargs) -> dict:
    return compute_metrics(
        equity_times=times_ns(moments),
        equity_values=np.asarray(values, dtype=float),
        round_trips=kwargs.pop("round_trips", []),
        **kwargs,
    )


def trip(pnl: str, entry: datetime = START, exit_: datetime | None = None) -> RoundTrip:
    return RoundTrip(
        symbol="SPY",
        entry_time=entry,
        exit_time=exit_ or entry + timedelta(days=1),
        quantity=Decimal(1),
        entry_price=Decimal(100),
        exit_price=Decimal(100) + Decimal(pnl),
        pnl=Decimal(pnl),
    )


def fill(
    minute: int,
    side: str,
    quantity: str,
    price: str,
    *,
    symbol: str = "SPY",
    asset_type=AssetType.EQUITY,
    commission: str = "0",
) -> FillRecord:
    return FillRecord(
        execution_id=f"x{minute}",
        order_id=minute,
        time=START + timedelta(minutes=minute),
        symbol=symbol,
        asset_type=asset_type,
        side=side,
        quantity=Decimal(quantity),
        price=Decimal(price),
        commission=Decimal(commission),
    )


# --- against empyrical ------------------------------------------------------------------------


def test_random_daily_series_matches_empyrical():
    moments = business_days(600)
    values = random_equity(600, seed=7)
    returns = values[1:] / values[:-1] - 1.0

    metrics = metrics_for(moments, values)

    assert metrics["sharpe"] == pytest.approx(empyrical.sharpe_ratio(returns), rel=RELATIVE)
    assert metrics["sortino"] == pytest.approx(empyrical.sortino_ratio(returns), rel=RELATIVE)
    assert metrics["annual_volatility"] == pytest.approx(empyrical.annual_volatility(returns), rel=RELATIVE)
    assert metrics["max_drawdown"] == pytest.approx(empyrical.max_drawdown(returns), rel=RELATIVE)
    assert metrics["max_drawdown"] < 0
    assert metrics["total_return"] == pytest.approx(empyrical.cum_returns_final(returns), rel=RELATIVE)
    assert metrics["start_value"] == values[0] and metrics["final_value"] == values[-1]


def test_cagr_uses_calendar_time_not_the_count_of_returns():
    moments = business_days(600)  # weekends make the calendar span longer than 599 / 252 years
    values = random_equity(600, seed=7)
    returns = values[1:] / values[:-1] - 1.0
    years = (moments[-1] - moments[0]).days / 365.25

    metrics = metrics_for(moments, values)

    assert metrics["cagr"] == pytest.approx((values[-1] / values[0]) ** (1 / years) - 1, rel=RELATIVE)
    assert metrics["calmar"] == pytest.approx(metrics["cagr"] / abs(empyrical.max_drawdown(returns)), rel=RELATIVE)
    assert metrics["cagr"] < empyrical.cagr(returns)  # the same growth spread over more (calendar) time


def test_cagr_and_calmar_equal_empyrical_when_periods_are_calendar_days():
    moments = calendar_days(400)
    values = random_equity(400, seed=11)
    returns = values[1:] / values[:-1] - 1.0

    metrics = metrics_for(moments, values, periods_per_year=365.25)

    assert metrics["cagr"] == pytest.approx(empyrical.cagr(returns, annualization=365.25), rel=RELATIVE)
    assert metrics["calmar"] == pytest.approx(empyrical.calmar_ratio(returns, annualization=365.25), rel=RELATIVE)
    assert metrics["sharpe"] == pytest.approx(empyrical.sharpe_ratio(returns, annualization=365.25), rel=RELATIVE)


def test_risk_free_rate_is_annual_and_applied_per_period():
    moments = business_days(300)
    values = random_equity(300, seed=3)
    returns = values[1:] / values[:-1] - 1.0
    daily_risk_free = 1.04 ** (1 / 252) - 1

    metrics = metrics_for(moments, values, risk_free_rate=0.04)

    assert metrics["sharpe"] == pytest.approx(empyrical.sharpe_ratio(returns, risk_free=daily_risk_free), rel=RELATIVE)
    assert metrics["sortino"] == pytest.approx(
        empyrical.sortino_ratio(returns, required_return=daily_risk_free), rel=RELATIVE
    )
    assert metrics["sharpe"] < metrics_for(moments, values)["sharpe"]


def test_intraday_points_are_aggregated_to_the_last_value_of_each_utc_date():
    rng = np.random.default_rng(5)
    # A run starting mid-morning: 14 half-hourly points a day for 120 business days.
    moments = [
        day.replace(hour=13, minute=30) + timedelta(minutes=30 * step)
        for day in business_days(120)
        for step in range(14)
    ]
    values = 50_000.0 * np.cumprod(1.0 + rng.normal(0.0001, 0.003, len(moments)))
    series = pd.Series(values, index=pd.DatetimeIndex(moments))
    daily_closes = series.groupby(series.index.date).last().to_numpy()
    # The first return is measured from the run's first point, not from the first day's close.
    daily = np.concatenate([[values[0]], daily_closes])
    returns = daily[1:] / daily[:-1] - 1.0

    metrics = metrics_for(moments, values)

    assert len(returns) == 120
    assert metrics["sharpe"] == pytest.approx(empyrical.sharpe_ratio(returns), rel=RELATIVE)
    assert metrics["sortino"] == pytest.approx(empyrical.sortino_ratio(returns), rel=RELATIVE)
    assert metrics["annual_volatility"] == pytest.approx(empyrical.annual_volatility(returns), rel=RELATIVE)
    assert metrics["max_drawdown"] == pytest.approx(empyrical.max_drawdown(returns), rel=RELATIVE)
    assert metrics["total_return"] == pytest.approx(np.prod(1 + returns) - 1, rel=RELATIVE)


def test_intraday_dip_between_daily_closes_does_not_count_as_drawdown():
    day = START.replace(hour=0)
    moments = [
        day + timedelta(hours=9),
        day + timedelta(hours=12),
        day + timedelta(hours=23, minutes=59),
        day + timedelta(days=1, minutes=1),
    ]
    metrics = metrics_for(moments, [100.0, 50.0, 100.0, 110.0])

    assert metrics["max_drawdown"] == 0.0
    assert metrics["total_return"] == pytest.approx(0.1)


def test_monotonically_rising_series_has_no_drawdown_and_no_sortino():
    moments = business_days(50)
    rng = np.random.default_rng(9)
    values = 100.0 * np.cumprod(1.0 + rng.uniform(0.0001, 0.01, 50))
    returns = values[1:] / values[:-1] - 1.0

    metrics = metrics_for(moments, values)

    assert metrics["max_drawdown"] == 0.0
    assert metrics["max_drawdown_duration_days"] == 0.0
    assert metrics["sortino"] is None
    assert metrics["calmar"] is None
    assert metrics["sharpe"] == pytest.approx(empyrical.sharpe_ratio(returns), rel=RELATIVE)


def test_constant_growth_and_flat_series_have_no_sharpe():
    moments = business_days(30)
    growing = metrics_for(moments, 100.0 * 1.001 ** np.arange(30))
    flat = metrics_for(moments, np.full(30, 100.0))

    assert growing["sharpe"] is None and growing["sortino"] is None
    assert flat["sharpe"] is None and flat["sortino"] is None
    assert flat["annual_volatility"] == 0.0 and flat["total_return"] == 0.0 and flat["max_drawdown"] == 0.0


def test_benchmark_alpha_and_beta_match_empyrical():
    moments = business_days(400)
    rng = np.random.default_rng(21)
    benchmark_returns = rng.normal(0.0003, 0.01, 399)
    strategy_returns = 0.0002 + 1.3 * benchmark_returns + rng.normal(0, 0.004, 399)
    benchmark = 400.0 * np.concatenate([[1.0], np.cumprod(1 + benchmark_returns)])
    values = 1_000.0 * np.concatenate([[1.0], np.cumprod(1 + strategy_returns)])
    daily_risk_free = 1.03 ** (1 / 252) - 1

    metrics = metrics_for(moments, values, benchmark_values=benchmark, risk_free_rate=0.03)
    expected_alpha, expected_beta = empyrical.alpha_beta(strategy_returns, benchmark_returns, risk_free=daily_risk_free)

    assert metrics["beta"] == pytest.approx(expected_beta, rel=RELATIVE)
    assert metrics["alpha"] == pytest.approx(expected_alpha, rel=RELATIVE)
    assert metrics["beta"] == pytest.approx(1.3, abs=0.05)
    assert metrics["benchmark_return"] == pytest.approx(benchmark[-1] / benchmark[0] - 1, rel=RELATIVE)


def test_benchmark_keys_only_when_a_benchmark_is_given_and_none_for_a_flat_one():
    moments = business_days(20)
    values = random_equity(20, seed=1)

    assert "beta" not in metrics_for(moments, values)
    flat = metrics_for(moments, values, benchmark_values=np.full(20, 10.0))
    assert flat["benchmark_return"] == 0.0 and flat["alpha"] is None and flat["beta"] is None


# --- drawdown --------------------------------------------------------------------------------


def test_drawdown_duration_on_a_hand_made_series():
    # Peak 110 on day 1, recovered (111) on day 5: 4 days. Peak 111 on day 5, never recovered
    # by the last point on day 12: 7 days, the longest.
    values = [100, 110, 99, 105, 108, 111, 100, 95, 97, 102, 104, 106, 109]
    metrics = metrics_for(calendar_days(13), values)

    assert metrics["max_drawdown_duration_days"] == 7.0
    assert metrics["max_drawdown"] == pytest.approx(95 / 111 - 1)


def test_drawdown_duration_counts_calendar_days_and_equal_to_peak_is_recovered():
    moments = business_days(6)  # Tue 2 Jan ... Tue 9 Jan 2024, a weekend in between
    metrics = metrics_for(moments, [100, 120, 110, 90, 120, 119])

    # Peak Wed 3 Jan, back at 120 on Mon 8 Jan: 5 calendar days; then one day under to the end.
    assert metrics["max_drawdown_duration_days"] == 5.0


def test_drawdown_series_is_the_fraction_below_the_running_peak():
    assert drawdown_series(np.array([100.0, 120.0, 90.0, 120.0, 130.0])).tolist() == [0.0, 0.0, -0.25, 0.0, 0.0]
    undefined = drawdown_series(np.array([0.0, -5.0, 10.0, 5.0]))
    assert np.isnan(undefined[:2]).all() and undefined[2:].tolist() == [0.0, -0.5]
    assert drawdown_series(np.array([])).size == 0


# --- trades ----------------------------------------------------------------------------------


def test_win_rate_and_profit_factor_on_hand_computed_trades():
    trips = [trip("100"), trip("-50"), trip("30"), trip("-20"), trip("0")]
    metrics = metrics_for(business_days(5), [100, 101, 102, 101, 103], round_trips=trips)

    assert metrics["trades"] == 5
    assert metrics["win_rate"] == pytest.approx(2 / 5)
    assert metrics["profit_factor"] == pytest.approx(130 / 70)


def test_profit_factor_is_none_without_losing_trades_and_win_rate_none_without_trades():
    moments, values = business_days(3), [100, 101, 102]
    only_winners = metrics_for(moments, values, round_trips=[trip("5"), trip("7")])
    no_trades = metrics_for(moments, values)

    assert only_winners["profit_factor"] is None and only_winners["win_rate"] == 1.0
    assert no_trades["trades"] == 0 and no_trades["win_rate"] is None and no_trades["profit_factor"] is None
    assert metrics_for(moments, values, round_trips=[trip("-5")])["profit_factor"] == 0.0


def test_fifo_closes_the_oldest_lot_first_one_round_trip_per_lot():
    trips = round_trips_from_fills(
        [fill(0, "buy", "10", "100"), fill(1, "buy", "10", "110"), fill(2, "sell", "15", "120")]
    )

    assert [(t.quantity, t.entry_price, t.exit_price, t.pnl) for t in trips] == [
        (Decimal(10), Decimal(100), Decimal(120), Decimal(200)),
        (Decimal(5), Decimal(110), Decimal(120), Decimal(50)),
    ]
    assert trips[0].entry_time == START and trips[1].entry_time == START + timedelta(minutes=1)
    assert all(t.exit_time == START + timedelta(minutes=2) for t in trips)


def test_partial_closes_and_commissions_pro_rata():
    trips = round_trips_from_fills(
        [
            fill(0, "buy", "10", "50", commission="2"),
            fill(1, "sell", "4", "55", commission="1"),
            fill(2, "sell", "6", "45", commission="1"),
        ]
    )

    # 4 of 10 closed: 4 * 5 - 0.8 entry - 1 exit; then 6 * -5 - 1.2 entry - 1 exit.
    assert [(t.quantity, t.pnl) for t in trips] == [(Decimal(4), Decimal("18.2")), (Decimal(6), Decimal("-32.2"))]
    assert sum(t.pnl for t in trips) == Decimal(4 * 5 - 6 * 5 - 4)


def test_flip_closes_the_long_then_opens_a_short():
    trips = round_trips_from_fills(
        [
            fill(0, "buy", "10", "100", commission="1"),
            fill(1, "sell", "15", "110", commission="3"),  # 10 close the long, 5 open a short
            fill(2, "buy", "5", "104", commission="1"),
        ]
    )

    long_trip, short_trip = trips
    assert (long_trip.quantity, long_trip.pnl) == (Decimal(10), Decimal(100 - 1 - 2))
    assert short_trip.quantity == Decimal(-5)
    assert short_trip.entry_price == Decimal(110) and short_trip.entry_time == START + timedelta(minutes=1)
    assert short_trip.pnl == Decimal(5 * 6 - 1 - 1)


def test_short_round_trip_and_open_positions_left_out():
    trips = round_trips_from_fills(
        [fill(0, "sell", "3", "20"), fill(1, "buy", "3", "25"), fill(2, "buy", "7", "30"), fill(3, "sell", "2", "31")]
    )

    assert [(t.quantity, t.pnl) for t in trips] == [(Decimal(-3), Decimal(-15)), (Decimal(2), Decimal(2))]


def test_symbols_and_asset_types_are_matched_separately_with_futures_multipliers():
    fills = [
        fill(0, "buy", "2", "5000", symbol="ES", asset_type=AssetType.FUTURE, commission="4"),
        fill(1, "buy", "100", "50", symbol="ES", asset_type=AssetType.EQUITY),
        fill(2, "sell", "2", "5010.25", symbol="ES", asset_type=AssetType.FUTURE, commission="4"),
        fill(3, "sell", "100", "51", symbol="ES", asset_type=AssetType.EQUITY),
    ]

    future, equity = round_trips_from_fills(fills, multipliers={("ES", "future"): Decimal(50)})

    assert future.pnl == Decimal("10.25") * 2 * 50 - 8
    assert equity.pnl == Decimal(100)


def test_fills_are_taken_in_time_order():
    trips = round_trips_from_fills([fill(5, "sell", "1", "12"), fill(0, "buy", "1", "10")])

    assert [(t.quantity, t.pnl) for t in trips] == [(Decimal(1), Decimal(2))]


def test_bad_fills_are_refused_naming_the_fill():
    with pytest.raises(ValueError, match=r"fills\[1\] \(SPY\): side is 'hold'"):
        round_trips_from_fills([fill(0, "buy", "1", "10"), fill(1, "hold", "1", "10")])
    with pytest.raises(ValueError, match=r"fills\[0\] \(SPY\): quantity is 0"):
        round_trips_from_fills([fill(0, "buy", "0", "10")])


# --- exposure, turnover, commissions ---------------------------------------------------------


def test_exposure_from_round_trips_is_the_union_of_their_time():
    moments = calendar_days(11)  # ten days
    trips = [
        trip("1", entry=moments[1], exit_=moments[3]),
        trip("1", entry=moments[2], exit_=moments[5]),  # overlaps the first: days 1-5 count once
        trip("1", entry=moments[7], exit_=moments[8]),
    ]

    metrics = metrics_for(moments, np.linspace(100, 110, 11), round_trips=trips)
    given = metrics_for(moments, np.linspace(100, 110, 11), round_trips=trips, exposure_fraction=0.9)

    assert metrics["exposure"] == pytest.approx(5 / 10)
    assert given["exposure"] == 0.9


def test_turnover_is_traded_notional_over_average_daily_equity_and_commissions_pass_through():
    metrics = metrics_for(
        business_days(4), [100_000, 110_000, 90_000, 100_000], traded_notional=250_000, commissions=Decimal("12.50")
    )

    assert metrics["turnover"] == pytest.approx(2.5)
    assert metrics["commissions"] == 12.5


# --- edge cases ------------------------------------------------------------------------------


def test_empty_series():
    metrics = compute_metrics(equity_times=np.array([], dtype=np.int64), equity_values=np.array([]), round_trips=[])

    assert metrics["trades"] == 0 and metrics["commissions"] == 0.0
    assert all(metrics[key] is None for key in metrics if key not in ("trades", "commissions"))
    json.dumps(metrics, allow_nan=False)


def test_single_point():
    metrics = metrics_for([START], [1000.0])

    assert metrics["total_return"] == 0.0 and metrics["max_drawdown"] == 0.0
    assert metrics["start_value"] == metrics["final_value"] == 1000.0
    assert metrics["cagr"] is None and metrics["sharpe"] is None and metrics["annual_volatility"] is None
    json.dumps(metrics, allow_nan=False)


def test_equity_reaching_zero():
    metrics = metrics_for(business_days(4), [100.0, 50.0, 0.0, 0.0])

    assert metrics["total_return"] == -1.0 and metrics["max_drawdown"] == -1.0 and metrics["cagr"] is None  # 4 days
    a_month = metrics_for(calendar_days(31), [100.0] * 15 + [50.0] + [0.0] * 15)
    assert a_month["cagr"] == -1.0 and a_month["max_drawdown"] == -1.0
    assert metrics["sharpe"] is None and metrics["sortino"] is None  # returns of no capital are undefined
    json.dumps(metrics, allow_nan=False)


def test_negative_equity_and_negative_start():
    went_negative = metrics_for(business_days(3), [100.0, -10.0, 50.0])
    started_negative = metrics_for(business_days(3), [-10.0, -5.0, -20.0])

    assert went_negative["total_return"] == pytest.approx(-0.5) and went_negative["max_drawdown"] == pytest.approx(-1.1)
    assert went_negative["cagr"] is None  # two days: too short to annualise
    assert went_negative["sharpe"] is None and went_negative["annual_volatility"] is None
    assert started_negative["total_return"] is None and started_negative["max_drawdown"] is None
    assert started_negative["turnover"] is None
    json.dumps(went_negative, allow_nan=False)
    json.dumps(started_negative, allow_nan=False)


def test_a_large_gain_within_minutes_has_no_cagr_instead_of_overflowing():
    metrics = metrics_for([START, START + timedelta(minutes=1)], [100.0, 200.0])

    assert metrics["total_return"] == 1.0 and metrics["cagr"] is None


def test_cagr_and_calmar_need_a_month_of_calendar_time():
    # A Paper run's first hours: 2.5 % in a day would be an absurd annual rate.
    day = metrics_for([START, START + timedelta(hours=6, minutes=30)], [100_000.0, 102_550.0])
    assert day["total_return"] == pytest.approx(0.0255) and day["cagr"] is None and day["calmar"] is None
    for days, has_cagr in ((29, False), (30, True), (45, True)):
        moments = [START, START + timedelta(days=days / 2), START + timedelta(days=days)]
        metrics = metrics_for(moments, [100.0, 90.0, 101.0])
        assert (metrics["cagr"] is not None) is has_cagr, days
        assert (metrics["calmar"] is not None) is has_cagr, days
    assert metrics["cagr"] == pytest.approx(1.01 ** (365.25 / 45) - 1, rel=RELATIVE)


def test_bad_series_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="equity_times must be ascending; index 2"):
        metrics_for([START, START + timedelta(days=2), START + timedelta(days=1)], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="equity_times has 2 points and equity_values 3"):
        compute_metrics(equity_times=times_ns([START, START]), equity_values=np.array([1.0, 2.0, 3.0]), round_trips=[])
    with pytest.raises(ValueError, match="equity_values has a NaN"):
        metrics_for(business_days(2), [1.0, np.nan])
    with pytest.raises(ValueError, match="benchmark_values has 1 points"):
        metrics_for(business_days(2), [1.0, 2.0], benchmark_values=np.array([1.0]))


# --- downsample ------------------------------------------------------------------------------


def test_downsample_keeps_first_last_and_extremes():
    rng = np.random.default_rng(2)
    times = np.arange(10_000, dtype=np.int64) * 60_000_000_000
    values = np.cumsum(rng.normal(0, 1, 10_000))

    kept_times, kept_values = downsample(times, values, 200)

    assert len(kept_times) <= 200
    assert kept_times[0] == times[0] and kept_times[-1] == times[-1]
    assert values.min() in kept_values and values.max() in kept_values
    assert np.all(np.diff(kept_times) > 0)
    positions = np.searchsorted(times, kept_times)
    assert np.array_equal(values[positions], kept_values)


def test_downsample_leaves_short_series_alone_and_refuses_too_few_points():
    times, values = np.arange(5, dtype=np.int64), np.array([3.0, 1.0, 4.0, 1.0, 5.0])

    kept_times, kept_values = downsample(times, values, 10)

    assert kept_times.tolist() == times.tolist() and kept_values.tolist() == values.tolist()
    with pytest.raises(ValueError, match="max_points is 3"):
        downsample(times, values, 3)
