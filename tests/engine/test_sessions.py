"""Trading sessions kept on disk between processes. Depends on: exchange_calendars' XNYS
calendar; a temporary directory as the cache."""

from datetime import UTC, datetime
from importlib.metadata import version

import numpy as np
import pytest

from runs.engine import sessions as sessions_module
from runs.engine.sessions import Sessions, sessions_between

START, END = datetime(2016, 3, 1, tzinfo=UTC), datetime(2017, 6, 30, tzinfo=UTC)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(sessions_module, "cache_dir", tmp_path)
    sessions_module._sessions_for_years.cache_clear()  # each test starts as a new process would
    yield tmp_path
    sessions_module._sessions_for_years.cache_clear()


def built_fresh(name="XNYS") -> Sessions:
    return sessions_module._build_sessions(name, START.year - 1, END.year + 1)


def assert_same(a: Sessions, b: Sessions) -> None:
    for column in ("opens", "closes", "days"):
        np.testing.assert_array_equal(getattr(a, column), getattr(b, column))
    assert a.open_list == b.open_list and a.close_list == b.close_list


def test_the_first_build_is_kept_on_disk_and_the_next_process_reads_it(cache_dir):
    first = sessions_between("XNYS", START, END)
    [kept] = cache_dir.glob("*.npz")
    assert kept.name == f"sessions-XNYS-2015-2018-xcals{version('exchange_calendars')}.npz"
    assert_same(first, built_fresh())
    assert first.closes[0] == np.datetime64("2015-01-02T21:00", "ns").astype(np.int64)  # 16:00 New York

    # What the next process gets is what the file holds: shorten the file, then read again.
    np.savez(kept, opens=first.opens[:-1], closes=first.closes[:-1], days=first.days[:-1])
    sessions_module._sessions_for_years.cache_clear()
    assert len(sessions_between("XNYS", START, END)) == len(first) - 1


def test_an_unreadable_cache_file_is_rebuilt(cache_dir):
    sessions_between("XNYS", START, END)
    [kept] = cache_dir.glob("*.npz")
    kept.write_bytes(b"not a numpy file")
    sessions_module._sessions_for_years.cache_clear()
    assert_same(sessions_between("XNYS", START, END), built_fresh())
    with np.load(kept) as arrays:  # and written again, whole
        np.testing.assert_array_equal(arrays["closes"], built_fresh().closes)


def test_without_a_cache_directory_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(sessions_module, "cache_dir", None)
    sessions_module._sessions_for_years.cache_clear()
    assert_same(sessions_between("XNYS", START, END), built_fresh())
    assert not list(tmp_path.iterdir())
    sessions_module._sessions_for_years.cache_clear()


def test_an_unknown_calendar_is_still_refused_by_name(cache_dir):
    with pytest.raises(ValueError, match="unknown exchange calendar 'NOPE'"):
        sessions_between("NOPE", START, END)
    assert not list(cache_dir.glob("*.npz"))
