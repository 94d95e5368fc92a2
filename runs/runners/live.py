"""The Live runner: the real-time loop (runs.engine.realtime) on Alpaca's market data feed, its
orders sent to a real broker account through the Live broker (runs.engine.live_broker).

The Django edge of the Live broker:
- the order row is stored (committed) before the order is sent (`order_store`);
- every send happens inside `send_guard`: one transaction that locks the run row and checks that
  no kill is recorded and that this worker still owns the run. run_kill's update waits for the
  lock, so a kill is recorded either before a send (which then does not happen) or after it;
- `LiveRunState` keeps the worker that owns the run, the positions the account held before the
  run, and the broker's values at the latest reconciliation (shown on Performance);
- restart: a new delivery of the task for a run still `running` whose heartbeat is older than
  LIVE_RESUME_AFTER_SECONDS takes the run over (`live_resume_claim`), rebuilds the run's
  portfolio and orders from the database, asks the broker about every order still open
  (by client_order_id) and books the executions it missed, reconciles positions and cash, and
  only then starts the strategy again.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from issues.models import LogEntry
from issues.services import issue_record
from portfolio.broker_accounts import CredentialsMissing, broker_credentials
from portfolio.models import BrokerAccount, Fill, LedgerEntry, LiveRunState
from portfolio.models import Order as OrderRow
from portfolio.services import ledger_batch_record
from runs.adapters.alpaca import (
    DEFAULT_TIMEOUT,
    AlpacaError,
    AlpacaRealtimeFeed,
    AlpacaTradingClient,
    AlpacaUnavailable,
    Credentials,
    TradeUpdatesStream,
)
from runs.engine import CoreSettings
from runs.engine.decimals import plain
from runs.engine.feed import from_ns
from runs.engine.ledger import Portfolio
from runs.engine.live_broker import RECONCILE_SECONDS, LiveBroker, LiveOrder, Reconciliation, kernel_instrument
from runs.engine.realtime import run_realtime
from runs.engine.records import OrderRecord
from runs.models import Mode, Run, Status
from runs.runners import RunOutcome
from runs.runners.backtest import DatabaseMarketData, metrics_store
from runs.runners.recorder import DatabaseRecorder, order_stats_add
from strategies.loader import load_version
from strategies.sdk.enums import AssetType, Intent, OrderState, OrderType, TimeInForce

RESUME_AFTER_DEFAULT_SECONDS = 60
# Each flush is the run's heartbeat (a resume needs it LIVE_RESUME_AFTER_SECONDS old).
LIVE_FLUSH_SECONDS = 1.0
LIVE_STOP_POLL_SECONDS = 0.5


def resume_after() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "LIVE_RESUME_AFTER_SECONDS", RESUME_AFTER_DEFAULT_SECONDS)))


# -- ownership and resuming -------------------------------------------------------------------
@transaction.atomic
def live_resume_claim(*, run_id: int) -> bool:
    """A new delivery of a Live run's task finding it `running` with a stale heartbeat: its
    worker died. Take the run over (compare-and-set on the heartbeat: one delivery wins)."""
    stale_before = timezone.now() - resume_after()
    claimed = Run.objects.filter(
        pk=run_id, mode=Mode.LIVE, status=Status.RUNNING, heartbeat_at__lt=stale_before
    ).update(heartbeat_at=timezone.now())
    return bool(claimed)


def live_state_take(*, run: Run, account: BrokerAccount, owner: str, baseline: dict[str, Decimal]) -> tuple[LiveRunState, bool]:
    """This worker owns the run from now on; returns (state, resumed?)."""
    with transaction.atomic():
        state, created = LiveRunState.objects.select_for_update().get_or_create(
            run=run, defaults={"account": account, "owner": owner, "baseline_positions": {k: str(v) for k, v in baseline.items()}}
        )
        if not created:
            LiveRunState.objects.filter(pk=state.pk).update(owner=owner, resumes=state.resumes + 1)
            state.refresh_from_db()
    return state, not created


@transaction.atomic
def order_store(*, run_id: int, record: OrderRecord) -> None:
    """The order row (and the run's order statistics), committed before the order is sent."""
    order_stats_add(run_id=run_id, change=ledger_batch_record(run_id=run_id, orders=[record]))


class SendGuard:
    """`with guard() as allowed:` around each send (see the module docstring)."""

    def __init__(self, *, run_id: int, owner: str):
        self.run_id, self.owner = run_id, owner
        self.refused = False

    @contextlib.contextmanager
    def __call__(self):
        if self.refused:
            yield False
            return
        with transaction.atomic():
            # A write first: on SQLite it takes the database's write lock, on PostgreSQL the row's.
            owns = LiveRunState.objects.filter(run_id=self.run_id, owner=self.owner).update(owner=self.owner)
            row = Run.objects.select_for_update().filter(pk=self.run_id).values("kill_requested_at").first()
            allowed = bool(owns) and row is not None and row["kill_requested_at"] is None
            if not allowed:
                self.refused = True
            yield allowed


def reconciliation_store(*, run_id: int, result: Reconciliation) -> None:
    LiveRunState.objects.filter(run_id=run_id).update(
        reconciled_at=result.taken_at,
        cash=result.account.cash,
        equity=result.account.equity,
        buying_power=result.account.buying_power,
        positions=[
            {"symbol": p.symbol, "quantity": plain(p.qty), "average_price": plain(p.avg_entry_price),
             "market_value": plain(p.market_value) if p.market_value is not None else None}
            for p in result.positions
        ],
    )
    Run.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())


def stored_orders(*, run_id: int, instrument_for) -> tuple[list[LiveOrder], set[str], int]:
    """The run's orders as the engine knew them, its booked execution ids, its last order id."""
    orders = []
    for row in OrderRow.objects.filter(run_id=run_id).order_by("order_id"):
        order = LiveOrder(
            row.order_id, row.client_order_id, instrument_for(row.symbol), row.symbol, AssetType(row.asset_type),
            Intent(row.intent), OrderType(row.order_type), TimeInForce(row.time_in_force), row.quantity, row.notional,
            row.limit_price, row.stop_price, row.tag or None, row.side, row.created_at,
        )
        order.state = OrderState(row.state)
        order.filled_quantity = row.filled_quantity
        order.average_fill_price = row.average_fill_price
        order.filled_cost = row.filled_quantity * (row.average_fill_price or 0)
        order.reason = row.reject_reason
        order.updated_at = row.updated_at
        order.broker_order_id = row.broker_order_id
        orders.append(order)
    execution_ids = set(Fill.objects.filter(run_id=run_id).values_list("execution_id", flat=True))
    return orders, execution_ids, max((o.order_id for o in orders), default=0)


def portfolio_rebuild(*, run_id: int, portfolio, instrument_for) -> None:
    """The run's cash and positions from its stored deposits and fills (already recorded: the
    entries this makes are not recorded again)."""
    for entry in LedgerEntry.objects.filter(run_id=run_id, kind=LedgerEntry.Kind.DEPOSIT).order_by("time", "id"):
        portfolio.deposit(entry.amount, time=entry.time, description=entry.description)
    for fill in Fill.objects.filter(run_id=run_id).select_related("order").order_by("time", "id"):
        instrument = instrument_for(fill.symbol)
        if instrument is None:
            continue
        signed = fill.quantity if fill.side == "buy" else -fill.quantity
        portfolio.apply_fill(instrument, signed, fill.price, fill.commission, fill.time, fill.order.order_id)
    portfolio.new_entries = []
    portfolio.touched = {}


def live_issue(*, run_id: int, code: str, message: str, detail: str = "", classification: str = "system", severity: str = "error") -> None:
    issue_record(run_id=run_id, code=code, component="broker", classification=classification, severity=severity, message=message, detail=detail)


def live_connection(*, run: Run) -> tuple[BrokerAccount, Credentials] | str:
    """The run's broker account and credentials, or why there are none (an issue is recorded)."""
    name = (run.config.get("environment") or {}).get("broker_account", "")
    account = BrokerAccount.objects.filter(name=name, enabled=True).first()
    if account is None:
        issue_record(
            run_id=run.pk, code="config_invalid", component="platform", classification="user", severity="error",
            message=f"environment.broker_account '{name}' is not an enabled broker account: Copy the run and choose an enabled account.",
        )
        return "no enabled broker account"
    try:
        key_id, secret = broker_credentials(account=account)
    except CredentialsMissing as exc:
        live_issue(run_id=run.pk, code="broker_unavailable", classification="user", message=str(exc))
        return "broker credentials missing"
    return account, Credentials(key_id, secret)


def new_owner() -> str:
    return uuid.uuid4().hex


def broker_failure(run_id: int, exc: AlpacaError, doing: str) -> str:
    live_issue(run_id=run_id, code="broker_unavailable", message=f"The broker failed while {doing}: {exc.message}. Start a new run once the broker is reachable.")
    return f"broker unavailable while {doing}"


def starting_core(core, account_cash: Decimal):
    """A Live run starts with the account's cash (reconciliation compares with it)."""
    return replace(core, starting_cash=account_cash)


class LiveStop:
    """`should_stop` for a Live session: a kill was recorded, the broker halted the run (drift),
    or another worker took the run over."""

    def __init__(self, *, run_id: int, owner: str):
        self.run_id, self.owner = run_id, owner
        self.broker: LiveBroker | None = None
        self.lost = False

    def __call__(self) -> bool:
        if self.broker is not None and self.broker.halted:
            return True
        row = Run.objects.filter(pk=self.run_id).values("kill_requested_at", "status").first()
        # Not `running` any more: a worker that lost the run to this one finished it; stop too
        # rather than trade in a run the console shows as ended.
        if row is None or row["kill_requested_at"] is not None or row["status"] != Status.RUNNING:
            return True
        self.lost = not LiveRunState.objects.filter(run_id=self.run_id, owner=self.owner).exists()
        return self.lost


def live_run_execute(run: Run) -> RunOutcome:
    connection = live_connection(run=run)
    if isinstance(connection, str):
        return RunOutcome(status=Status.ERROR, message=connection)
    account, credentials = connection
    trading_url, trading_stream_url, data_url, data_stream_url = account.urls
    loaded = load_version(run.strategy_version)
    core = CoreSettings.from_config(run.config.get("core") or {})
    client = AlpacaTradingClient(trading_url, credentials)
    stream = TradeUpdatesStream(trading_stream_url, credentials)
    feed = AlpacaRealtimeFeed(data_url=data_url, stream_url=data_stream_url, credentials=credentials, feed=account.data_feed)
    owner = new_owner()
    try:
        stream.start()
        try:
            if not stream.wait_connected(DEFAULT_TIMEOUT):
                raise AlpacaUnavailable(f"the trading stream did not connect: {stream.status}")
            # Listening before anything else: an execution is never missed between two steps.
            broker_account_now = client.account()
            positions_now = client.positions()
        except AlpacaError as exc:
            feed.close()
            return RunOutcome(status=Status.ERROR, message=broker_failure(run.pk, exc, "connecting"))
        state, resumed = live_state_take(run=run, account=account, owner=owner, baseline={p.symbol: p.qty for p in positions_now})
        if resumed:
            live_issue(
                run_id=run.pk, code="worker_lost", severity="warning",
                message=("The worker running this run stopped; a new worker took it over, asked the broker about the run's open "
                         "orders, booked the executions it missed and reconciled positions and cash before trading again. "
                         "The strategy was started again (its in-memory state was lost)."),
            )
        else:
            core = starting_core(core, broker_account_now.cash)
        baseline = {symbol: Decimal(quantity) for symbol, quantity in state.baseline_positions.items()}
        guard = SendGuard(run_id=run.pk, owner=owner)
        stop = LiveStop(run_id=run.pk, owner=owner)

        def prepare(broker: LiveBroker, now) -> None:
            if not resumed:
                return
            kernel = broker.listener
            # The books of a resumed run come from the database: run_realtime's starting
            # deposit is undone and the stored deposits and fills are replayed instead.
            Portfolio.__init__(kernel.portfolio)
            portfolio_rebuild(run_id=run.pk, portfolio=kernel.portfolio, instrument_for=broker.instrument_for)
            kernel.log_sink.sequence = LogEntry.objects.filter(run_id=run.pk).aggregate(last=Max("sequence"))["last"] or 0
            orders, execution_ids, last_order_id = stored_orders(run_id=run.pk, instrument_for=broker.instrument_for)
            broker.resume(orders=orders, execution_ids=execution_ids, last_order_id=last_order_id)
            broker.catch_up(now)

        def broker_factory(kernel) -> LiveBroker:
            broker = LiveBroker(
                core=core, portfolio=kernel.portfolio, client_order_prefix=f"r{run.pk}", end_ns=kernel.end_ns, listener=kernel,
                gateway=client, updates=stream.updates, issues=kernel.issues,
                store_order=lambda record: order_store(run_id=run.pk, record=record), send_guard=guard,
                instrument_for=lambda symbol: kernel_instrument(kernel, symbol),
                on_reconciled=lambda result: reconciliation_store(run_id=run.pk, result=result), on_prepare=prepare,
                baseline=baseline, reconcile_seconds=float(getattr(settings, "LIVE_RECONCILE_SECONDS", RECONCILE_SECONDS)),
            )
            stop.broker = broker
            return broker

        result = run_realtime(
            strategy_class=loaded.strategy_class,
            strategy_config=run.config.get("strategy") or {},
            core=core,
            feed=feed,
            market_data=DatabaseMarketData(),
            recorder=DatabaseRecorder(run_id=run.pk, log_max_lines=settings.RUN_LOG_MAX_LINES),
            should_stop=stop,
            strategy_file_prefix=loaded.file_prefix,
            flush_interval_seconds=LIVE_FLUSH_SECONDS,
            stop_poll_seconds=LIVE_STOP_POLL_SECONDS,
            log_max_lines=settings.RUN_LOG_MAX_LINES,
            client_order_prefix=f"r{run.pk}",
            broker_factory=broker_factory,
        )
        Run.objects.filter(pk=run.pk).update(portfolio_value=result.portfolio_value, bars_processed=result.bars_processed)
        if not resumed and len(result.equity_times) > 1:  # a resumed session's curve is only part of the run's
            first, last = (from_ns(int(result.equity_times[i])) for i in (0, -1))
            metrics_store(run=run, result=result, market_data=DatabaseMarketData(), core=core, start=first, end=last)
        if stop.broker is not None and stop.broker.halted:
            return RunOutcome(status=Status.ERROR, message=f"halted: {stop.broker.halted}"[:300])
        return RunOutcome(status=result.status, message=result.error_message or "")
    finally:
        stream.stop()
        client.close()
