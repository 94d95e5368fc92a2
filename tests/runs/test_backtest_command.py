"""`manage.py backtest`: one run or a batch from a file, its JSON lines and table, its exit
statuses (0 complete, 1 a run ended in `error`, 2 bad arguments or input) and its refusals, in
this process (call_command), as a real process (run_from_argv ends it with os._exit) and through a
real Celery worker (--via-worker). Depends on: the SMA Crossover example bundle and MSFT daily
bars from 2017-01-03 (`msft_with_bars`, `sma_version` of test_study_services), the factories'
buy-and-hold bundle, and the `celery_worker_process` fixture."""

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from portfolio.models import Fill, Order
from runs.models import Run, Status
from tests.conftest import ROOT, _test_database_url
from tests.runs.test_study_services import msft_with_bars, sma_version
from tests.strategies.factories import StrategyFactory, StrategyVersionFactory

pytestmark = pytest.mark.django_db

JSON_KEYS = {"run_id", "status", "metrics", "orders", "fills", "bars_processed", "seconds"}
METRIC_NAMES = {
    "total_return", "cagr", "annual_volatility", "sharpe", "sortino", "max_drawdown", "max_drawdown_duration_days",
    "calmar", "win_rate", "profit_factor", "trades", "exposure", "turnover", "commissions", "final_value",
}
# The SMA Crossover over all 80 stored sessions (the last is 2017-04-26): it buys once.
SMA_RUN = ["--strategy", "SMA Crossover", "--start", "2017-01-03", "--end", "2017-04-28", "--param", "fast=3", "--param", "slow=8"]
JANUARY = {"start": "2017-01-03", "end": "2017-01-31"}  # 20 sessions


def strategy_with_code(name: str, on_start_body: str = "", on_bar_body: str = "return None"):
    """A published strategy on the buy-and-hold schema (symbol, frequency) running this code."""
    code = (
        "import time\n"
        "from strategies.sdk import AssetType, StrategyBase, Subscribe\n"
        "class Strategy(StrategyBase):\n"
        "    def on_start(self, now):\n"
        f"        {on_start_body or 'pass'}\n"
        "        return [Subscribe(self.config['symbol'], AssetType.EQUITY, 'day')]\n"
        "    def on_bar(self, event):\n"
        f"        {on_bar_body}\n"
    )
    files = {**StrategyVersionFactory.build().files, "strategy.py": code}
    return StrategyVersionFactory(strategy=StrategyFactory(name=name, files=files), files=files)


def raising_strategy():
    return strategy_with_code("Raises", on_bar_body="return 1 / 0")


def backtest(*args) -> str:
    out = StringIO()
    call_command("backtest", *args, stdout=out)
    return out.getvalue()


def backtest_exiting(*args) -> tuple[int, str]:
    """For runs that end in `error`: the command's exit code and what it printed before."""
    out = StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("backtest", *args, stdout=out)
    return exit_.value.code, out.getvalue()


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def batch_file(tmp_path, specs) -> str:
    path = tmp_path / "batch.json"
    path.write_text(specs if isinstance(specs, str) else json.dumps(specs))
    return str(path)


def test_one_run_by_name_prints_one_json_line_and_is_stored_complete():
    msft_with_bars()
    version = sma_version()
    latest = StrategyVersionFactory(strategy=version.strategy, files=version.files)
    output = backtest(*SMA_RUN, "--core", "starting_cash=50000", "--core", "commission.bps=10", "--json")
    [result] = json_lines(output)
    assert set(result) >= JSON_KEYS and set(result["metrics"]) >= METRIC_NAMES
    run = Run.objects.get(pk=result["run_id"])
    assert run.status == result["status"] == Status.COMPLETE
    assert run.strategy_version == latest  # no --version: the latest
    assert run.config["strategy"] == {"symbol": "MSFT", "fast": 3, "slow": 8, "frequency": "day"}
    assert run.config["core"] == {"starting_cash": 50000, "commission": {"bps": 10}}  # dotted names nest
    assert result["orders"] == Order.objects.filter(run=run).count() == 1
    assert result["fills"] == Fill.objects.filter(run=run).count() == 1
    assert result["bars_processed"] == run.bars_processed == 80
    assert result["metrics"]["final_value"] == float(run.portfolio_value)
    assert result["metrics"]["start_value"] == 50000 and result["metrics"]["commissions"] > 0
    assert 0 < result["seconds"] < 30


def test_version_picks_that_version_and_the_strategy_may_be_named_by_id():
    msft_with_bars()
    first = sma_version()
    StrategyVersionFactory(strategy=first.strategy, files=first.files)
    [result] = json_lines(backtest("--strategy", str(first.strategy.pk), "--version", "1", *SMA_RUN[2:], "--json"))
    run = Run.objects.get(pk=result["run_id"])
    assert (run.strategy_version, run.status) == (first, Status.COMPLETE)


@pytest.mark.parametrize(
    ("start", "end", "bars"),
    [
        ("2017-01-03", "2017-01-31", 20),  # dates: whole sessions, the end one included
        ("2017-01-31", "2017-01-31", 1),  # one date is that one session
        ("2017-01-03", "2017-01-31T00:00", 19),  # an ISO datetime is that moment: 31 January is out
        ("2017-01-03T10:00", "2017-01-31", 19),  # ... and 3 January's bar (09:30 New York) is before it
    ],
)
def test_dates_are_whole_sessions_and_datetimes_are_moments(start, end, bars):
    msft_with_bars()
    sma_version()
    [result] = json_lines(backtest("--strategy", "SMA Crossover", "--start", start, "--end", end, "--json"))
    assert result["status"] == Status.COMPLETE
    assert result["bars_processed"] == Run.objects.get(pk=result["run_id"]).bars_processed == bars


def test_a_batch_file_runs_each_config_and_prints_a_table_with_a_row_per_run(tmp_path):
    msft_with_bars()
    sma_version()
    path = batch_file(tmp_path, [
        {"strategy": "SMA Crossover", **JANUARY, "params": {"fast": 3, "slow": 8}},
        {"strategy": "SMA Crossover", "start": "2017-01-03", "end": "2017-04-28", "params": {"fast": 3, "slow": 8}, "core": {"starting_cash": 50000}},
    ])
    header, *rows = backtest("--file", path).strip().splitlines()
    assert header.split()[:2] == ["run", "status"] and "final value" in header
    runs = list(Run.objects.order_by("pk"))
    assert [row.split()[:2] for row in rows] == [[str(run.pk), "complete"] for run in runs]
    assert [run.bars_processed for run in runs] == [20, 80]
    assert rows[1].split()[2] == f"{float(runs[1].portfolio_value):,.2f}"


def test_seconds_is_each_runs_own_time_not_the_batch_so_far(tmp_path):
    msft_with_bars()
    sma_version()
    strategy_with_code("Slow start", on_start_body="time.sleep(0.5)")
    path = batch_file(tmp_path, [{"strategy": "Slow start", **JANUARY}, {"strategy": "SMA Crossover", **JANUARY}])
    slow, quick = json_lines(backtest("--file", path, "--json"))
    assert slow["seconds"] >= 0.5 > quick["seconds"]


def test_a_run_that_raises_ends_in_error_exits_1_and_the_rest_of_the_batch_still_runs(tmp_path):
    msft_with_bars()
    sma_version()
    raising_strategy()
    path = batch_file(tmp_path, [{"strategy": "Raises", **JANUARY}, {"strategy": "SMA Crossover", **JANUARY}])
    code, output = backtest_exiting("--file", path, "--json")
    assert code == 1
    failed, completed = json_lines(output)
    assert (failed["status"], completed["status"]) == (Status.ERROR, Status.COMPLETE)
    assert "strategy_exception" in failed["issues"]
    assert dict(Run.objects.values_list("pk", "status")) == {failed["run_id"]: Status.ERROR, completed["run_id"]: Status.COMPLETE}


def test_the_table_shows_an_errored_runs_issues(tmp_path):
    msft_with_bars()
    raising_strategy()
    code, output = backtest_exiting("--strategy", "Raises", "--start", "2017-01-03", "--end", "2017-01-31")
    assert code == 1
    _header, row, issues = output.strip().splitlines()
    assert row.split()[1] == Status.ERROR and issues.split() == ["issues:", "strategy_exception"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "Nope", "--start", "2017-01-03", "--end", "2017-01-31"], r"--strategy 'Nope': no such strategy .*Known: SMA Crossover"),
        (["--strategy", "SMA Crossover", "--version", "7", "--start", "2017-01-03", "--end", "2017-01-31"], "--version 7: SMA Crossover has no such version"),
        (["--strategy", "SMA Crossover", "--version", "0", "--start", "2017-01-03", "--end", "2017-01-31"], "--version 0: SMA Crossover has no such version"),
        (["--strategy", "SMA Crossover", "--end", "2017-01-31"], r"missing --start \(or use --file\)"),
        ([], "missing --strategy, --start, --end"),
        (["--strategy", "SMA Crossover", "--start", "2017-01-03", "--end", "2017-01-31", "--param", "fast"], "--param 'fast': expected NAME=VALUE"),
        (["--strategy", "SMA Crossover", "--start", "2017-01-03", "--end", "2017-01-31", "--core", "=1"], "--core '=1': expected NAME=VALUE"),
        (["--strategy", "SMA Crossover", "--start", "2017-01-03", "--end", "2017-01-31", "--core", "starting_cash=lots"], r"invalid config\n  core.starting_cash: 'lots' is not a number"),
        (["--strategy", "SMA Crossover", "--start", "2017-01-03", "--end", "2017-01-31", "--core", "allow_short=3"], "core.allow_short: must be true or false"),
        (["--strategy", "SMA Crossover", "--start", "2017-01-03", "--end", "2017-01-31", "--param", "fast=0"], "strategy.fast: must be at least 1"),
        (["--strategy", "SMA Crossover", "--start", "January", "--end", "2017-01-31"], "environment.start: 'January' is not a date"),
        (["--strategy", "SMA Crossover", "--start", "2017-01-31", "--end", "2017-01-03"], "environment.end: must be after start"),
    ],
)
def test_bad_input_is_refused_naming_the_option_or_field_and_runs_nothing(args, message):
    msft_with_bars()
    sma_version()
    with pytest.raises(CommandError, match=message) as refused:
        backtest(*args, "--json")
    assert refused.value.returncode == 2  # told apart from a run that ended in error (1)
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{", r"--file .*batch\.json: Expecting"),
        ('{"strategy": "SMA Crossover"}', r"--file .*batch\.json: expected a JSON list of objects"),
        ('["SMA Crossover"]', r"--file .*batch\.json: expected a JSON list of objects"),
        ('[{"strategy": "SMA Crossover", "start": "2017-01-03", "end": "2017-01-31", "parms": {}}]', r"--file .*batch\.json: run 1: unknown key parms"),
    ],
)
def test_a_malformed_batch_file_is_refused_naming_file(tmp_path, content, message):
    sma_version()
    with pytest.raises(CommandError, match=message):
        backtest("--file", batch_file(tmp_path, content))
    assert Run.objects.count() == 0


def test_a_missing_batch_file_is_refused_naming_file(tmp_path):
    with pytest.raises(CommandError, match=r"--file .*absent\.json: .*No such file"):
        backtest("--file", str(tmp_path / "absent.json"))


def test_a_batch_with_one_invalid_config_runs_none_of_it(tmp_path):
    # Without this, the runs before the bad one were left `starting`, never to be executed.
    msft_with_bars()
    sma_version()
    path = batch_file(tmp_path, [{"strategy": "SMA Crossover", **JANUARY}, {"strategy": "SMA Crossover", **JANUARY, "core": {"starting_cash": -5}}])
    with pytest.raises(CommandError, match=r"run 2: invalid config\n  core.starting_cash: must be greater than 0"):
        backtest("--file", path)
    assert Run.objects.count() == 0


def manage_backtest(*args) -> subprocess.CompletedProcess:
    """`manage.py backtest` as its own process against the test database."""
    # Output to a pipe is block-buffered (PYTHONUNBUFFERED unset): the command must flush it itself.
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, "DATABASE_URL": _test_database_url(), "DEBUG": "true"}
    return subprocess.run(
        [sys.executable, "manage.py", "backtest", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.django_db(transaction=True)  # committed, for the command's own connection
def test_as_a_process_it_prints_the_whole_json_line_and_exits_0_or_1():
    msft_with_bars()
    sma_version()
    raising_strategy()

    complete = manage_backtest(*SMA_RUN, "--json")
    assert complete.returncode == 0, complete.stderr
    [result] = json_lines(complete.stdout)  # flushed before os._exit
    run = Run.objects.get(pk=result["run_id"])
    assert run.status == result["status"] == Status.COMPLETE
    assert (run.bars_processed, Order.objects.filter(run=run).count()) == (result["bars_processed"], result["orders"]) == (80, 1)

    failed = manage_backtest("--strategy", "Raises", "--start", "2017-01-03", "--end", "2017-01-31", "--json")
    assert failed.returncode == 1, failed.stderr
    [result] = json_lines(failed.stdout)
    assert Run.objects.get(pk=result["run_id"]).status == result["status"] == Status.ERROR


@pytest.mark.django_db(transaction=True)
def test_as_a_process_bad_arguments_and_input_exit_2_with_the_message():
    unknown = manage_backtest("--strategy", "SMA Crossover", "--bogus")
    assert unknown.returncode == 2 and "unrecognized arguments: --bogus" in unknown.stderr
    missing = manage_backtest("--strategy", "SMA Crossover", "--json")
    assert missing.returncode == 2 and "missing --start, --end" in missing.stderr
    assert missing.stdout == ""


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_via_worker_queues_the_run_and_waits_for_its_result(celery_worker_process):
    msft_with_bars()
    sma_version()
    # A process with a time limit: the command waits for the worker as long as it takes.
    completed = manage_backtest("--strategy", "SMA Crossover", "--start", "2017-01-03", "--end", "2017-01-31", "--json", "--via-worker")
    assert completed.returncode == 0, f"{completed.stderr}\nworker log:\n{celery_worker_process.log_path.read_text()}"
    [result] = json_lines(completed.stdout)
    assert result["status"] == Status.COMPLETE and result["bars_processed"] == 20
    assert "runs.execute_run[" in celery_worker_process.log_path.read_text()
    assert Run.objects.get(pk=result["run_id"]).status == Status.COMPLETE
