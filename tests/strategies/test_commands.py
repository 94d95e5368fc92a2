from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from strategies.models import Strategy
from tests.strategies.factories import BUNDLES, bundle_files

pytestmark = pytest.mark.django_db


def publish(*args):
    out, err = StringIO(), StringIO()
    try:
        call_command("publish_strategy", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def test_publishing_a_folder_prints_the_version():
    status, out, _ = publish(str(BUNDLES / "crossover_a"), "--name", "Crossover", "--message", "first")
    assert (status, out) == (0, "Published Crossover v1\n")
    assert Strategy.objects.get(name="Crossover").versions.get().message == "first"


def test_the_name_defaults_to_the_folder_name():
    assert publish(str(BUNDLES / "buy_and_hold"))[:2] == (0, "Published Buy And Hold v1\n")


def test_errors_are_printed_one_per_line_with_exit_status_1(tmp_path):
    files = bundle_files("crossover_a")
    files["signals.py"] = "SOURCE = 'a'\ndef crossover(:\n"
    files["config_schema.json"] = files["config_schema.json"].replace('"EQUITY"', '"BOND"')
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    status, out, err = publish(str(tmp_path), "--name", "Broken")
    assert status == 1 and out == ""
    assert err.splitlines() == [
        'config_schema.json:4: parameter "symbol": "x-lookout-asset-type" must be "EQUITY" or "FUTURE" (got "BOND"): fix it',
        "signals.py:2: syntax error: invalid syntax: fix the code",
    ]
    assert not Strategy.objects.filter(name="Broken").exists()


def test_nothing_changed_is_an_error():
    publish(str(BUNDLES / "buy_and_hold"))
    status, _, err = publish(str(BUNDLES / "buy_and_hold"))
    assert (status, err) == (1, "nothing changed since v1: edit a file before publishing again\n")


def test_a_bad_name_is_reported():
    status, _, err = publish(str(BUNDLES / "buy_and_hold"), "--name", "x" * 101)
    assert status == 1 and err.startswith("name: the name is 101 characters; at most 100")
