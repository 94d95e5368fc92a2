"""The example in docs/sdk.md is a working bundle: published checks pass and it trades."""

import re
from datetime import date
from pathlib import Path

from strategies.bundle import bundle_files_check
from strategies.loader import load_strategy
from strategies.schema import schema_check
from tests.engine.factories import SecurityInfoFactory, backtest, session_times, utc, walk_bars

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def test_the_documented_strategy_runs():
    section = DOC.read_text().split("## A complete strategy", 1)[1]
    source = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    schema = re.search(r"```json\n(.*?)```", section, re.S).group(1)
    files = {"strategy.py": source, "config_schema.json": schema}
    assert bundle_files_check(files) == []
    assert schema_check(schema)[1] == []
    loaded = load_strategy(files=files, label="docs@1")
    days = session_times(date(2019, 1, 2), date(2019, 12, 31), daily=True)
    result, recorder, _ = backtest(
        loaded.strategy_class, securities=[SecurityInfoFactory.build(symbol="MSFT")],
        bars={("MSFT", "equity", "day"): walk_bars(days, seed=9, volatility=0.015)},
        config={"symbol": "MSFT", "period": 20}, start=utc(2019, 1, 1), end=utc(2020, 1, 1),
        strategy_file_prefix=loaded.file_prefix,
    )
    assert result.status == "complete", [issue.message for issue in recorder.all("issues")]
    assert len(result.fills) >= 4
    assert any(line.message.startswith("entering at") for line in recorder.all("logs"))
