from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from securities.models import Security
from securities.services import security_import_csv
from tests.securities.conftest import DATA_DIR
from tests.securities.factories import SecurityFactory

pytestmark = pytest.mark.django_db


def run_import(path, *args):
    out, err = StringIO(), StringIO()
    call_command("import_securities", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_vendored_files_load_with_their_own_columns():
    out, err = run_import(DATA_DIR / "us_equities.csv")
    assert "us_equities.csv: 1,118 rows: 1,118 created, 0 updated, 0 unchanged, 0 rejected" in out
    assert err == ""
    out, _ = run_import(DATA_DIR / "us_etfs.csv")
    assert "2,037 rows: 2,037 created, 0 updated, 0 unchanged, 0 rejected" in out
    out, _ = run_import(DATA_DIR / "us_futures.csv", "--asset-type", "future")
    assert "38 rows: 38 created, 0 updated, 0 unchanged, 0 rejected" in out

    assert Security.objects.filter(asset_type="equity").count() == 1118 + 2037
    msft = Security.objects.get(symbol="MSFT", asset_type="equity")
    assert (msft.name, msft.exchange, msft.isin, msft.sector) == ("Microsoft", "NASDAQ", "US5949181045", "Technology")
    assert Security.objects.get(symbol="SPY").sector == "Exchange Traded Fund"
    es_future = Security.objects.get(symbol="ES", asset_type="future")
    assert (es_future.name, es_future.exchange, es_future.multiplier, es_future.tick_size) == (
        "E-mini S&P 500",
        "CME",
        Decimal("50"),
        Decimal("0.25"),
    )
    assert Security.objects.get(symbol="ES", asset_type="equity").name == "Eversource Energy"
    assert Security.objects.get(symbol="6J").tick_size == Decimal("0.0000005")
    assert Security.objects.get(symbol="MBT").multiplier == Decimal("0.1")


def test_a_second_run_changes_nothing():
    run_import(DATA_DIR / "us_futures.csv")
    out, _ = run_import(DATA_DIR / "us_futures.csv")
    assert "38 rows: 0 created, 0 updated, 38 unchanged, 0 rejected" in out
    assert Security.objects.count() == 38


def test_the_import_is_a_handful_of_bulk_queries(django_assert_max_num_queries):
    with django_assert_max_num_queries(40):  # batches of 500 rows, not a query per row
        report = security_import_csv(file=DATA_DIR / "us_etfs.csv")
    assert report.created == 2037


def test_bad_rows_are_reported_by_line_and_the_good_rows_kept(write_csv):
    path = write_csv(
        """
        Symbol,Name,Asset_Type,Exchange,Tick_Size,Multiplier,Notes
        AAPL,Apple Inc.,EQUITY,NASDAQ,0.01,1,kept
        ,Nameless,EQUITY,NYSE,0.01,1,
        ZN,10-Year Note,FUTURE,CBOT,0.015625,1000,kept
        ZB,Bond,FUTURE,CBOT,abc,1000,
        XX,Something,BOND,,,,
        AAPL,Apple again,EQUITY,NASDAQ,0.01,1,
        TINY,Tiny ticks,FUTURE,CME,0.000000001,1,
        NEG,Negative multiplier,FUTURE,CME,0.25,-5,
        SHORT,Too few fields
        BRK B,Berkshire,EQUITY,,,,
        NONAME,,EQUITY,,,,
        """
    )
    out, err = run_import(path)
    assert err.splitlines() == [
        "line 3: symbol is empty",
        "line 5: tick_size 'abc' is not a number",
        "line 6: asset_type 'BOND' is not one of equity, future",
        "line 7: AAPL (equity) repeats line 2; the first is kept",
        "line 8: tick_size '0.000000001' has more than 8 decimal places",
        "line 9: multiplier '-5' must be a number greater than 0",
        "line 10: expected 7 fields, found 2",
        "line 11: symbol 'BRK B' contains a space",
        "line 12: name is empty (symbol NONAME)",
    ]
    assert "11 rows: 2 created, 0 updated, 0 unchanged, 9 rejected (ignored columns: notes)" in out
    assert sorted(Security.objects.values_list("symbol", "asset_type")) == [("AAPL", "equity"), ("ZN", "future")]
    assert Security.objects.get(symbol="ZN").tick_size == Decimal("0.015625")


def test_changed_rows_are_updated_and_empty_cells_keep_the_stored_value(write_csv):
    SecurityFactory(symbol="MSFT", name="Microsoft", exchange="NASDAQ", sector="Technology", isin="US5949181045")
    SecurityFactory(symbol="AAPL", name="Apple Inc.", exchange="NASDAQ", sector="Technology")
    path = write_csv(
        """
        symbol,name,exchange,sector,isin
        msft,Microsoft Corporation,,Software,
        AAPL,Apple Inc.,NASDAQ,Technology,
        """
    )
    report = security_import_csv(file=path, default_asset_type="equity")
    assert (report.created, report.updated, report.unchanged, report.rejected) == (0, 1, 1, 0)
    msft = Security.objects.get(symbol="MSFT")
    assert (msft.name, msft.exchange, msft.sector, msft.isin) == (
        "Microsoft Corporation",
        "NASDAQ",
        "Software",
        "US5949181045",
    )


def test_rows_without_an_asset_type_need_a_default(write_csv):
    path = write_csv(
        """
        symbol,name
        MSFT,Microsoft
        """
    )
    report = security_import_csv(file=path)
    assert report.errors == ["line 2: asset_type is empty and no default was given (use --asset-type equity|future)"]
    run_import(path, "--asset-type", "equity")
    assert Security.objects.get(symbol="MSFT").asset_type == "equity"


def test_a_file_without_the_required_columns_is_refused(write_csv):
    path = write_csv(
        """
        ticker,company
        MSFT,Microsoft
        """
    )
    with pytest.raises(CommandError, match=r"the header lacks symbol, name.*nothing was imported"):
        run_import(path)
    assert not Security.objects.exists()


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        run_import(tmp_path / "nope.csv")
