"""The Runs page and the run detail panel: list, filters, polling, the initial tab, the three
tabs' content. Depends on: the test database, the role groups made by migration runs/0002,
and the factories of runs, strategies, securities and portfolio."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from issues.services import issue_record, log_entries_append
from portfolio.models import OrderState
from runs.models import Mode, RunEvent, Status
from tests.portfolio.factories import LedgerEntryFactory, OrderFactory, PositionFactory, equity_points_store
from tests.runs.factories import RunFactory
from tests.securities.factories import SecurityFactory
from tests.strategies.factories import StrategyFactory, StrategyVersionFactory

pytestmark = pytest.mark.django_db


HTMX = {"HTTP_HX_REQUEST": "true"}


def htmx_headers(target: str) -> dict:
    return {**HTMX, "HTTP_HX_TARGET": target}


@pytest.fixture
def viewer(django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw")
    user.groups.add(Group.objects.get(name="Viewer"))
    return user


@pytest.fixture
def operator(django_user_model):
    user = django_user_model.objects.create_user("operator", password="pw")
    user.groups.add(Group.objects.get(name="Operator"))
    return user


@pytest.fixture
def msft():
    return SecurityFactory(symbol="MSFT", name="Microsoft Corporation")


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


# --- the runs list --------------------------------------------------------------------------------


def test_the_console_needs_a_login(client):
    response = client.get("/runs/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert client.get("/").headers["Location"] == "/runs/"


def test_the_login_page_signs_in_and_lands_on_the_runs_page(client, viewer):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b'name="password"' in page.content
    response = client.post("/accounts/login/", {"username": "viewer", "password": "pw"})
    assert response.status_code == 302
    assert response["Location"] == "/runs/"


def test_the_runs_list_shows_each_column(viewer_client):
    strategy = StrategyFactory(name="SMA Crossover")
    StrategyVersionFactory(strategy=strategy)
    version = StrategyVersionFactory(strategy=strategy)
    started = datetime(2024, 5, 6, 14, 30, tzinfo=UTC)
    RunFactory(
        description="Nightly SMA", strategy_version=version, status=Status.RUNNING, progress=42,
        pnl=Decimal("1234.5"), started_at=started,
    )
    RunFactory(description="Paper check", mode=Mode.PAPER, status=Status.COMPLETE, pnl=Decimal("-20"))
    html = viewer_client.get("/runs/").content.decode()
    assert "Nightly SMA" in html
    assert "SMA Crossover" in html and "v2" in html
    assert 'class="badge mode mode-backtest"' in html and 'class="badge mode mode-paper"' in html
    assert 'data-status="running"' in html and 'data-status="complete"' in html
    assert 'aria-valuenow="42"' in html  # the backtest's progress bar
    assert "+1,234.50" in html and "−20.00" in html
    assert "May 6, 14:30" in html


def test_the_runs_list_filters_by_status_mode_strategy_and_search(viewer_client):
    alpha = StrategyVersionFactory(strategy=StrategyFactory(name="Alpha"))
    beta = StrategyVersionFactory(strategy=StrategyFactory(name="Beta"))
    RunFactory(description="alpha new", strategy_version=alpha)
    RunFactory(description="alpha error", strategy_version=alpha, status=Status.ERROR)
    RunFactory(description="beta paper", strategy_version=beta, mode=Mode.PAPER)

    def listed(query: str) -> set[str]:
        html = viewer_client.get("/runs/?" + query).content.decode()
        return {name for name in ("alpha new", "alpha error", "beta paper") if f">{name}</a>" in html}

    assert listed("status=error") == {"alpha error"}
    assert listed("mode=paper") == {"beta paper"}
    assert listed(f"strategy={alpha.strategy_id}") == {"alpha new", "alpha error"}
    assert listed("q=beta") == {"beta paper"}  # by strategy name
    assert listed("q=ERROR") == {"alpha error"}  # by description, any case
    assert listed("status=nonsense") == {"alpha new", "alpha error", "beta paper"}


def test_the_runs_list_pages_by_25(viewer_client):
    version = StrategyVersionFactory()
    for number in range(30):
        RunFactory(description=f"run number {number:02d}", strategy_version=version)
    first = viewer_client.get("/runs/").content.decode()
    second = viewer_client.get("/runs/?page=2").content.decode()
    assert first.count('class="run-row') == 25 and "run number 29" in first
    assert second.count('class="run-row') == 5 and "run number 00" in second
    assert "Page 2 of 2" in second


def test_the_runs_list_takes_a_fixed_number_of_queries(viewer_client, django_assert_max_num_queries):
    for number in range(25):
        RunFactory(description=f"run {number}", strategy_version=StrategyVersionFactory(), status=Status.RUNNING)
    # session, user, count, the page of runs with their versions and strategies, strategies for
    # the filter, and the user's permissions: never one per run.
    with django_assert_max_num_queries(8):
        response = viewer_client.get("/runs/")
    assert response.content.decode().count('class="run-row') == 25
    with django_assert_max_num_queries(5):  # the two-second poll: session, user, count, page
        rows = viewer_client.get("/runs/", **htmx_headers("run-rows"))
    assert rows.content.decode().count('class="run-row') == 25


def test_rows_poll_every_two_seconds_only_while_a_visible_run_is_unfinished(viewer_client):
    run = RunFactory(status=Status.COMPLETE)
    quiet = viewer_client.get("/runs/", **htmx_headers("run-rows")).content.decode()
    assert quiet.lstrip().startswith('<tbody id="run-rows"')
    assert "every 2s" not in quiet and "runs-changed from:body" in quiet

    RunFactory(status=Status.STARTING)
    polling = viewer_client.get("/runs/", **htmx_headers("run-rows")).content.decode()
    assert "every 2s" in polling
    assert f'data-run-id="{run.pk}"' in polling
    assert "<thead>" not in polling  # just the rows


def test_the_filter_form_swaps_the_list_only(viewer_client):
    RunFactory(description="only one")
    html = viewer_client.get("/runs/?q=only", **htmx_headers("run-list")).content.decode()
    assert html.lstrip().startswith('<section id="run-list"')
    assert "<html" not in html


# --- the detail panel ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "tab"),
    [
        (Status.NEW, "configuration"),
        (Status.STARTING, "configuration"),
        (Status.RUNNING, "performance"),
        (Status.COMPLETE, "performance"),
        (Status.STOPPED, "performance"),
        (Status.ERROR, "issues"),
    ],
)
def test_the_detail_panel_opens_on_the_tab_its_status_calls_for(viewer_client, msft, status, tab):
    run = RunFactory(status=status)
    html = viewer_client.get(f"/runs/{run.pk}/").content.decode()
    assert f'<input type="hidden" id="current-tab" name="tab" value="{tab}">' in html
    assert f'id="tab-{tab}" href="/runs/{run.pk}/?tab={tab}"' in html


def test_the_detail_page_is_deep_linkable_and_a_row_click_swaps_just_the_panel(viewer_client, msft):
    run = RunFactory(description="deep link me", status=Status.COMPLETE)
    page = viewer_client.get(f"/runs/{run.pk}/").content.decode()
    assert "<html" in page and 'id="run-list"' in page and 'id="run-panel"' in page
    assert f'<tr data-run-id="{run.pk}" class="run-row" aria-selected="true">' in page
    assert 'hx-push-url="true"' in page

    panel = viewer_client.get(f"/runs/{run.pk}/", **htmx_headers("run-panel")).content.decode()
    assert panel.lstrip().startswith('<section id="run-panel"')
    assert "deep link me" in panel and 'id="run-list"' not in panel

    # The back button asks htmx for the whole page again.
    restore = viewer_client.get(f"/runs/{run.pk}/", HTTP_HX_HISTORY_RESTORE_REQUEST="true", **htmx_headers("run-panel"))
    assert "<html" in restore.content.decode()


def test_an_unknown_run_is_404(viewer_client):
    assert viewer_client.get("/runs/999999/").status_code == 404


def test_performance_polls_every_ten_seconds_while_running_and_stops_with_286(viewer_client, msft):
    run = RunFactory(status=Status.RUNNING, started_at=timezone.now())
    tab = viewer_client.get(f"/runs/{run.pk}/?tab=performance", **htmx_headers("run-body")).content.decode()
    assert 'hx-trigger="every 10s"' in tab

    refresh = viewer_client.get(f"/runs/{run.pk}/?tab=performance", **htmx_headers("performance"))
    assert refresh.status_code == 200
    assert "Refreshing every 10 s" in refresh.content.decode()

    run.status = Status.COMPLETE
    run.save()
    final = viewer_client.get(f"/runs/{run.pk}/?tab=performance", **htmx_headers("performance"))
    assert final.status_code == 286
    assert "Final figures." in final.content.decode()
    page = viewer_client.get(f"/runs/{run.pk}/?tab=performance").content.decode()
    assert 'hx-trigger="every 10s"' not in page


def test_a_running_paper_runs_metrics_so_far_are_shown_and_said_to_be_so(viewer_client, msft):
    run = RunFactory(status=Status.RUNNING, mode=Mode.PAPER, started_at=timezone.now(), metrics={})
    waiting = viewer_client.get(f"/runs/{run.pk}/?tab=performance", **htmx_headers("performance")).content.decode()
    assert "Metrics appear after about a minute of trading" in waiting
    run.metrics = {"total_return": 0.0123, "sharpe": 1.5, "trades": 3}
    run.save()
    live = viewer_client.get(f"/runs/{run.pk}/?tab=performance", **htmx_headers("performance")).content.decode()
    assert "Metrics so far" in live and "1.23 %" in live
    backtest = RunFactory(status=Status.RUNNING, started_at=timezone.now(), metrics={})
    assert "computed when the run ends" in viewer_client.get(f"/runs/{backtest.pk}/?tab=performance", **htmx_headers("performance")).content.decode()


def test_the_header_polls_while_active_and_reloads_the_panel_when_the_status_changes(viewer_client, msft):
    run = RunFactory(status=Status.RUNNING, started_at=timezone.now())
    same = viewer_client.get(f"/runs/{run.pk}/?status=running&tab=performance", **htmx_headers("run-header"))
    assert same.status_code == 200
    assert same.content.decode().lstrip().startswith('<header id="run-header"')
    assert 'hx-trigger="every 2s"' in same.content.decode()

    run.status = Status.ERROR
    run.save()
    changed = viewer_client.get(f"/runs/{run.pk}/?status=running&tab=performance", **htmx_headers("run-header"))
    assert changed["HX-Retarget"] == "#run-panel"
    assert changed["HX-Reswap"] == "outerHTML"
    assert 'value="issues"' in changed.content.decode()  # a run in error opens Issues & Logs


def test_after_a_status_change_a_tab_the_operator_chose_stays(viewer_client, msft):
    run = RunFactory(status=Status.COMPLETE)
    followed = viewer_client.get(f"/runs/{run.pk}/?status=starting&tab=configuration", **htmx_headers("run-header"))
    assert 'id="current-tab" name="tab" value="performance"' in followed.content.decode()
    kept = viewer_client.get(f"/runs/{run.pk}/?status=running&tab=issues", **htmx_headers("run-header"))
    assert 'id="current-tab" name="tab" value="issues"' in kept.content.decode()


def test_performance_shows_the_ledger_metrics_and_timeline(viewer_client, msft):
    run = RunFactory(
        status=Status.COMPLETE,
        portfolio_value=Decimal("101250.75"),
        pnl=Decimal("1250.75"),
        metrics={"total_return": 0.0125, "cagr": 0.051, "sharpe": 1.234, "sortino": 2.5, "max_drawdown": -0.083,
                 "win_rate": 0.6, "profit_factor": 1.8, "trades": 5, "exposure": 0.75},
    )
    LedgerEntryFactory(run=run, balance=Decimal("100000"))
    LedgerEntryFactory(run=run, time=datetime(2017, 1, 4, tzinfo=UTC), kind="trade", amount=Decimal("-625"), balance=Decimal("99375"))
    PositionFactory(run=run, symbol="MSFT", quantity=Decimal("10"), average_price=Decimal("62.5"), last_price=Decimal("63.1"),
                    market_value=Decimal("631"), unrealized_pnl=Decimal("6"), realized_pnl=Decimal("12.5"))
    PositionFactory(run=run, symbol="AAPL", quantity=Decimal("0"), realized_pnl=Decimal("-2.5"))
    OrderFactory(run=run, state=OrderState.FILLED)
    OrderFactory(run=run, state=OrderState.WORKING)
    OrderFactory(run=run, state=OrderState.REJECTED, reject_reason="insufficient buying power", filled_quantity=0)
    equity_points_store(run=run, times=[datetime(2017, 1, 3 + day, 21, tzinfo=UTC) for day in range(3)], values=[100000 + day for day in range(3)])
    RunEvent.objects.create(run=run, kind=RunEvent.Kind.STARTED)
    RunEvent.objects.create(run=run, kind=RunEvent.Kind.COMPLETED)

    html = viewer_client.get(f"/runs/{run.pk}/?tab=performance").content.decode()
    assert "101,250.75" in html and "99,375.00" in html  # portfolio value, cash from the ledger
    assert "+6.00" in html and "+10.00" in html  # unrealized (open positions), realized (all)
    assert "1.25 %" in html and "5.10 %" in html and "1.23" in html and "−8.30 %" in html and "60.0 %" in html
    assert ">MSFT <span" in html and "63.1000" in html and ">AAPL <span" not in html
    assert "insufficient buying power" in html
    assert "Pending / working" in html and "Cancelled / expired" in html
    assert "Started" in html and "Completed" in html
    assert f'id="chart-data-{run.pk}"' in html and f'id="equity-chart-{run.pk}"' in html


def test_the_chart_carries_at_most_2000_points(viewer_client, msft):
    run = RunFactory(status=Status.COMPLETE)
    start = datetime(2017, 1, 3, tzinfo=UTC)
    equity_points_store(run=run, times=[start + timedelta(minutes=n) for n in range(5000)], values=[100000 + n for n in range(5000)])
    html = viewer_client.get(f"/runs/{run.pk}/?tab=performance", **htmx_headers("performance")).content.decode()
    marker = f'<script id="chart-data-{run.pk}" type="application/json">'
    data = json.loads(html.split(marker, 1)[1].split("</script>", 1)[0])
    assert data["points"] == 5000
    assert len(data["equity"][0]) <= 2000 and len(data["drawdown"][0]) <= 2000
    assert max(data["equity"][1]) == 104999.0  # the peak survives downsampling
    assert "drawn from 2,000" in html


def test_issues_and_logs_show_classified_issues_and_a_paged_log_tail(viewer_client, msft):
    run = RunFactory(status=Status.ERROR)
    issue_record(run_id=run.pk, code="strategy_exception", component="strategy", classification="user", severity="error",
                 message="ZeroDivisionError in on_bar", detail='Traceback:\n  File "strategy.py", line 12, in on_bar')
    for _ in range(2):
        issue_record(run_id=run.pk, code="data_gap", component="data", classification="system", severity="warning", message="gap")
    moment = datetime(2017, 1, 3, 15, tzinfo=UTC)
    log_entries_append(run_id=run.pk, entries=[(n, moment, "INFO", f"line {n}") for n in range(1, 251)])

    html = viewer_client.get(f"/runs/{run.pk}/").content.decode()
    assert "strategy_exception" in html and "User error" in html and "System error" in html
    assert 'line 12, in on_bar' in html  # the traceback in the expandable detail
    assert '<td class="num">2</td>' in html  # the repeated issue counted up
    assert html.index("strategy_exception") < html.index("data_gap")  # errors first
    assert "line 250" in html and "line 151" in html and "line 150<" not in html
    assert "250 lines" in html
    assert "Load older" in html and "before=151" in html

    older = viewer_client.get(f"/runs/{run.pk}/?tab=issues&before=151", **htmx_headers("log-older")).content.decode()
    assert "line 150" in older and "line 51" in older and "line 151" not in older
    assert "before=51" in older

    oldest = viewer_client.get(f"/runs/{run.pk}/?tab=issues&before=51", **htmx_headers("log-older")).content.decode()
    assert "line 1<" in oldest and "Load older" not in oldest

    refreshed = viewer_client.get(f"/runs/{run.pk}/?tab=issues&log_open=1", **htmx_headers("issues-logs")).content.decode()
    assert refreshed.lstrip().startswith('<section id="issues-logs"')
    assert '<details class="log" open>' in refreshed


def test_the_configuration_tab_shows_the_inputs_read_only(viewer_client, msft):
    run = RunFactory(status=Status.COMPLETE, description="read me")
    html = viewer_client.get(f"/runs/{run.pk}/?tab=configuration").content.decode()
    assert 'id="run-form-view"' in html
    assert "<fieldset class=\"form-section\" disabled>" in html
    assert 'value="2017-01-03"' in html and 'value="MSFT"' in html
    assert "Microsoft Corporation" in html  # the ticker, as the security master knows it
    assert "Save Config" not in html


def test_the_runs_list_leaves_out_optimize_trials_unless_asked(viewer_client):
    from runs.models import Study

    base = RunFactory(description="the base run", status=Status.COMPLETE)
    study = Study.objects.create(description="sweep", base_run=base, strategy_version=base.strategy_version)
    RunFactory(description="a trial run", strategy_version=base.strategy_version, study=study)

    def listed(query: str) -> set[str]:
        html = viewer_client.get("/runs/?" + query).content.decode()
        return {name for name in ("the base run", "a trial run") if f">{name}</a>" in html}

    assert listed("") == {"the base run"}
    assert listed("trials=show") == {"the base run", "a trial run"}
