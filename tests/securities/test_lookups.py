import pytest

from securities.selectors import OTHER_ASSET_TYPE, RECOGNISED, UNKNOWN, security_get, security_search, security_validate
from securities.services import security_import_csv
from tests.securities.conftest import DATA_DIR
from tests.securities.factories import FutureFactory, SecurityFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def master():
    for symbol, name in [
        ("MSFT", "Microsoft Corporation"),
        ("MSTR", "MicroStrategy"),
        ("MS", "Morgan Stanley"),
        ("MU", "Micron Technology"),
        ("AAPL", "Apple Inc."),
        ("ES", "Eversource Energy"),
        ("ESS", "Essex Property Trust"),
        ("GOOG", "Alphabet Inc. (Class C)"),
        ("GOOGL", "Alphabet Inc. (Class A)"),
    ]:
        SecurityFactory(symbol=symbol, name=name)
    FutureFactory(symbol="ES", name="E-mini S&P 500")
    FutureFactory(symbol="MES", name="Micro E-mini S&P 500")
    FutureFactory(symbol="GC", name="Gold")


def test_a_known_symbol_is_recognised_case_insensitively(master):
    validation = security_validate(symbol=" msft ", asset_type="equity")
    assert validation.status == RECOGNISED and validation.recognised
    assert validation.symbol == "MSFT"
    assert validation.security == security_get(symbol="MSFT", asset_type="equity")
    assert (validation.name, validation.message) == ("Microsoft Corporation", "Microsoft Corporation")
    assert validation.corrections == [] and validation.found_as == []


def test_the_same_symbol_is_recognised_under_each_asset_type(master):
    assert security_validate(symbol="ES", asset_type="future").message == "E-mini S&P 500"
    assert security_validate(symbol="ES", asset_type="equity").message == "Eversource Energy"


def test_a_symbol_of_another_asset_type_says_where_it_was_found(master):
    validation = security_validate(symbol="MSFT", asset_type="future")
    assert validation.status == OTHER_ASSET_TYPE
    assert validation.found_as == ["equity"]
    assert validation.security is None
    assert validation.message == "found as Equity while this field expects Future"


def test_an_unknown_symbol_gets_ranked_corrections(master):
    validation = security_validate(symbol="MSFTT", asset_type="equity")
    assert validation.status == UNKNOWN
    assert [correction.symbol for correction in validation.corrections][:2] == ["MSFT", "MSTR"]
    assert validation.corrections[0].name == "Microsoft Corporation"
    scores = [correction.score for correction in validation.corrections]
    assert scores == sorted(scores, reverse=True) and len(scores) <= 5
    assert validation.message.startswith("unknown symbol 'MSFTT' — did you mean MSFT, MSTR")


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("MFST", "MSFT"), ("APPL", "AAPL"), ("GOOGLE", "GOOGL"), ("microsoft", "MSFT"), ("morgan", "MS")],
)
def test_common_slips_and_company_names_find_the_symbol_first(master, typed, meant):
    assert security_validate(symbol=typed, asset_type="equity").corrections[0].symbol == meant


def test_corrections_of_the_expected_asset_type_come_first(master):
    FutureFactory(symbol="MSFU", name="Made-up future")  # further from MSFTT than the equity MSFT
    validation = security_validate(symbol="MSFTT", asset_type="future")
    assert [(c.symbol, c.asset_type) for c in validation.corrections[:2]] == [("MSFU", "future"), ("MSFT", "equity")]
    assert validation.message.startswith("unknown symbol 'MSFTT' — did you mean MSFU, MSFT (Equity)")


def test_nothing_similar_says_so(master):
    validation = security_validate(symbol="ZZZZZZ", asset_type="equity")
    assert validation.corrections == []
    assert validation.message == "unknown symbol 'ZZZZZZ' — nothing similar in the security master"


def test_an_empty_symbol_asks_for_one(master):
    validation = security_validate(symbol="  ", asset_type="equity")
    assert (validation.status, validation.message) == (UNKNOWN, "enter a symbol")


def test_asset_types_are_read_in_any_case(master):
    assert security_validate(symbol="ES", asset_type="FUTURE").message == "E-mini S&P 500"
    assert security_get(symbol="ES", asset_type="Equity").name == "Eversource Energy"


def test_an_unknown_asset_type_is_a_programming_error(master):
    with pytest.raises(ValueError, match="asset type 'bond'"):
        security_validate(symbol="MSFT", asset_type="bond")


def test_corrections_follow_changes_to_the_master(master, write_csv):
    assert security_validate(symbol="NVDIA", asset_type="equity").corrections == []
    security_import_csv(file=write_csv("symbol,name\nNVDA,NVIDIA Corporation"), default_asset_type="equity")
    assert security_validate(symbol="NVDIA", asset_type="equity").corrections[0].symbol == "NVDA"


def test_an_inactive_security_is_recognised_and_marked(master):
    SecurityFactory(symbol="SPX", name="S&P 500 Index", active=False)
    assert security_validate(symbol="SPX", asset_type="equity").message == "S&P 500 Index (inactive)"


def test_the_full_vendored_master_ranks_the_obvious_fix_first():
    for name, asset_type in (("us_equities.csv", "equity"), ("us_etfs.csv", "equity"), ("us_futures.csv", "future")):
        security_import_csv(file=DATA_DIR / name, default_asset_type=asset_type)
    assert security_validate(symbol="MSFTT", asset_type="equity").message.startswith(
        "unknown symbol 'MSFTT' — did you mean MSFT, MSTR"
    )
    assert security_validate(symbol="NVDIA", asset_type="equity").corrections[0].symbol == "NVDA"
    assert security_validate(symbol="NQQ", asset_type="future").corrections[0].symbol == "NQ"


def symbols(securities):
    return [(security.symbol, security.asset_type) for security in securities]


def test_search_puts_symbol_prefix_matches_first_shortest_first(master):
    assert symbols(security_search(query="es")) == [("ES", "equity"), ("ES", "future"), ("ESS", "equity")]
    assert symbols(security_search(query="ms"))[:3] == [("MS", "equity"), ("MSFT", "equity"), ("MSTR", "equity")]


def test_search_matches_every_word_of_the_name_in_any_order(master):
    assert symbols(security_search(query="corporation micro")) == [("MSFT", "equity")]
    assert symbols(security_search(query="alphabet class")) == [("GOOGL", "equity"), ("GOOG", "equity")]
    assert symbols(security_search(query="soft")) == []  # words match from their start


def test_search_lists_name_matches_after_symbol_matches(master):
    # No symbol starts with MICRO: all four come from their names, in name order.
    assert symbols(security_search(query="micro")) == [
        ("MES", "future"),
        ("MU", "equity"),
        ("MSFT", "equity"),
        ("MSTR", "equity"),
    ]


def test_search_filters_by_asset_type_and_limits(master):
    assert symbols(security_search(query="es", asset_type="future")) == [("ES", "future")]
    assert symbols(security_search(query="micro", asset_type="future")) == [("MES", "future")]
    assert len(security_search(query="m", limit=2)) == 2
    assert security_search(query="  ") == []


def test_security_get_is_case_insensitive_and_exact(master):
    assert security_get(symbol="es", asset_type="future").name == "E-mini S&P 500"
    assert security_get(symbol="MSF", asset_type="equity") is None
