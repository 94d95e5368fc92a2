"""`manage.py study`: a scripted sweep run in-process (--inline), its table and JSON lines, and
its refusals. Depends on: the helpers of test_study_services."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from runs.models import Study, StudyStatus
from tests.runs.test_study_services import msft_with_bars, sma_base_run

pytestmark = pytest.mark.django_db


def run_command(*args) -> str:
    out = StringIO()
    call_command("study", *args, stdout=out)
    return out.getvalue()


def test_an_inline_sweep_prints_one_json_line_per_trial():
    msft_with_bars()
    base = sma_base_run()
    lines = [json.loads(line) for line in run_command("--base-run", str(base.pk), "--sweep", "fast=3,8", "--sweep", "slow=15:25:10", "--inline", "--json").splitlines()]
    study = Study.objects.get()
    assert study.status == StudyStatus.COMPLETE and study.search_space == {"fast": [3, 8], "slow": [15, 25]}
    assert [line["parameters"] for line in lines] == [{"fast": 5, "slow": 15}, {"fast": 3, "slow": 15}, {"fast": 8, "slow": 15}, {"fast": 5, "slow": 25}]
    assert [line["baseline"] for line in lines] == [True, False, False, False]
    assert sum(line["best"] for line in lines) == 1
    assert all(line["status"] == "complete" and line["metrics"]["final_value"] for line in lines)


def test_an_inline_grid_prints_a_table():
    msft_with_bars()
    base = sma_base_run()
    output = run_command("--base-run", str(base.pk), "--sweep", "fast=3,5", "--sweep", "slow=15,25", "--grid", "--objective", "total_return", "--inline")
    rows = output.strip().splitlines()
    assert rows[0].split()[:3] == ["run", "fast", "slow"]
    assert len(rows) == 1 + 4 + 1 and "best" in output
    assert rows[-1].startswith(f"study {Study.objects.get().pk}: complete, 4/4 trials finished, objective total_return max")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep", "fast"], "expected NAME=v1,v2"),
        ([], "give at least one --sweep"),
        (["--sweep", "fast=0,3"], "at least 1"),
        (["--sweep", "fast=1:30:1", "--sweep", "slow=31:60:1", "--grid"], "more than the 500"),
    ],
)
def test_bad_sweeps_are_refused_with_the_fix(args, message):
    msft_with_bars()
    base = sma_base_run()
    with pytest.raises(CommandError, match=message):
        run_command("--base-run", str(base.pk), *args)
    assert Study.objects.count() == 0
