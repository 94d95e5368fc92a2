import json

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from issues.models import AuditEvent
from strategies.bundle import MAX_FILE_BYTES, BundleInvalid, NothingChanged, PublishError, bundle_content_hash
from strategies.loader import load_version
from strategies.models import Strategy, StrategyVersion
from strategies.schema import ORDER_KEY, parameters_from_schema
from strategies.services import (
    STARTER_FILES,
    strategy_create,
    strategy_publish,
    strategy_publish_folder,
    strategy_update_files,
)
from tests.strategies.factories import BUNDLES, StrategyFactory, UserFactory, bundle_files

pytestmark = pytest.mark.django_db

STRATEGY_OK = bundle_files("buy_and_hold")["strategy.py"]
SCHEMA_OK = bundle_files("buy_and_hold")["config_schema.json"]


def publish_errors(files, author):
    """Publish `files` as stored (bypassing the save-time checks) and return the errors."""
    strategy = StrategyFactory(files=files)
    with pytest.raises(PublishError) as caught:
        strategy_publish(strategy=strategy, user=author)
    assert not StrategyVersion.objects.filter(strategy=strategy).exists()
    return caught.value.errors


def only_error(files, author):
    errors = publish_errors(files, author)
    assert len(errors) == 1, errors
    return errors[0]


# --- success -------------------------------------------------------------------------------


def test_publish_creates_version_1_then_2_and_refuses_an_unchanged_bundle(author):
    strategy = StrategyFactory(files=bundle_files("crossover_a"))
    first = strategy_publish(strategy=strategy, user=author, message="  first cut ")
    assert (first.number, first.message, first.published_by) == (1, "first cut", author)
    assert first.files == bundle_files("crossover_a")
    assert first.content_hash == bundle_content_hash(bundle_files("crossover_a"))
    assert first.config_schema["properties"]["fast"] == {"type": "integer", "title": "Fast window", "minimum": 1, "default": 10}

    strategy_update_files(strategy=strategy, files=bundle_files("crossover_b"), user=author)
    second = strategy_publish(strategy=strategy, user=author)
    assert second.number == 2 and second.files["signals.py"] == bundle_files("crossover_b")["signals.py"]
    first.refresh_from_db()
    assert first.files == bundle_files("crossover_a")  # the older version is untouched

    with pytest.raises(NothingChanged) as caught:
        strategy_publish(strategy=strategy, user=author)
    assert [str(error) for error in caught.value.errors] == ["nothing changed since v2: edit a file before publishing again"]
    assert caught.value.version == second
    assert StrategyVersion.objects.filter(strategy=strategy).count() == 2

    published = AuditEvent.objects.filter(action="strategy.publish", object_id=str(strategy.pk), allowed=True)
    assert sorted(event.detail["version"] for event in published) == [1, 2]


def test_the_parameter_order_survives_the_database(author):
    """PostgreSQL's jsonb re-orders object keys; the run form must still show them as written."""
    strategy = StrategyFactory(files=bundle_files("crossover_a"))
    version = strategy_publish(strategy=strategy, user=author)
    stored = StrategyVersion.objects.get(pk=version.pk)
    assert stored.config_schema[ORDER_KEY] == ["symbol", "fast", "slow", "frequency"]
    assert [parameter.name for parameter in parameters_from_schema(stored.config_schema)] == ["symbol", "fast", "slow", "frequency"]


def test_a_published_version_loads_and_its_strategy_starts(author):
    version = strategy_publish(strategy=StrategyFactory(files=bundle_files("buy_and_hold")), user=author)
    loaded = load_version(version)
    strategy = loaded.strategy_class(None, {"symbol": "MSFT", "frequency": "day"})
    [subscribe] = strategy.on_start(None)
    assert (subscribe.symbol, str(subscribe.asset_type), subscribe.frequency) == ("MSFT", "equity", "day")


# --- every way a publish can fail ------------------------------------------------------------


def test_missing_strategy_py(author):
    error = only_error({"config_schema.json": SCHEMA_OK}, author)
    assert error.file == "strategy.py" and "has no strategy.py" in error.message


def test_missing_schema(author):
    error = only_error({"strategy.py": STRATEGY_OK}, author)
    assert error.file == "config_schema.json" and "has no config_schema.json: add one" in error.message


def test_bad_json_names_its_line(author):
    error = only_error({"strategy.py": STRATEGY_OK, "config_schema.json": '{\n  "type": "object",\n  "properties": {\n}'}, author)
    assert (error.file, error.line) == ("config_schema.json", 4) and "invalid JSON" in error.message


def test_schema_not_an_object(author):
    error = only_error({"strategy.py": STRATEGY_OK, "config_schema.json": '["symbol"]'}, author)
    assert error.file == "config_schema.json" and "must be a JSON object" in error.message


def test_bad_asset_type(author):
    schema = SCHEMA_OK.replace('"x-lookout-asset-type": "EQUITY"', '"x-lookout-asset-type": "equity"')
    error = only_error({"strategy.py": STRATEGY_OK, "config_schema.json": schema}, author)
    assert (error.file, error.line) == ("config_schema.json", 9)
    assert '"x-lookout-asset-type" must be "EQUITY" or "FUTURE" (got "equity")' in error.message


def test_default_violating_its_minimum(author):
    files = bundle_files("crossover_a")
    files["config_schema.json"] = files["config_schema.json"].replace('"minimum": 1, "default": 10', '"minimum": 1, "default": 0')
    error = only_error(files, author)
    assert (error.file, error.line) == ("config_schema.json", 5) and "default must be at least 1 (got 0)" in error.message


def test_syntax_error_in_strategy_py(author):
    error = only_error({"strategy.py": STRATEGY_OK.replace("def on_bar(self, event):", "def on_bar(self, event)"), "config_schema.json": SCHEMA_OK}, author)
    assert (error.file, error.line) == ("strategy.py", 14) and "syntax error" in error.message


def test_syntax_error_in_a_helper(author):
    files = {**bundle_files("crossover_a"), "signals.py": "SOURCE = 'a'\n\ndef crossover(closes, fast, slow)\n    return False\n"}
    error = only_error(files, author)
    assert (error.file, error.line) == ("signals.py", 3) and "syntax error" in error.message


def test_import_time_exception(author):
    files = {**bundle_files("crossover_a"), "signals.py": "SOURCE = 'a'\nWINDOW = int('ten')\n"}
    error = only_error(files, author)
    assert (error.file, error.line) == ("signals.py", 2)
    assert "ValueError" in error.message and "move it into on_start" in error.message


def test_no_strategy_class(author):
    error = only_error({"strategy.py": "from strategies.sdk import StrategyBase\n\n\nclass MyStrategy(StrategyBase):\n    pass\n", "config_schema.json": SCHEMA_OK}, author)
    assert error.file == "strategy.py" and "defines no Strategy class" in error.message


def test_strategy_not_subclassing_strategy_base(author):
    error = only_error({"strategy.py": STRATEGY_OK.replace("class Strategy(StrategyBase):", "class Strategy:"), "config_schema.json": SCHEMA_OK}, author)
    assert (error.file, error.line) == ("strategy.py", 9) and "must subclass StrategyBase" in error.message


def test_strategy_without_on_start(author):
    source = STRATEGY_OK.replace("def on_start(self, now):", "def start(self, now):")
    error = only_error({"strategy.py": source, "config_schema.json": SCHEMA_OK}, author)
    assert (error.file, error.line) == ("strategy.py", 9) and "does not define on_start" in error.message


def test_too_many_files(author):
    files = {**bundle_files("buy_and_hold"), **{f"helper_{n}.py": "" for n in range(49)}}
    error = only_error(files, author)
    assert error.file is None and "the bundle has 51 files; at most 50" in error.message


def test_a_file_too_big(author):
    error = only_error({**bundle_files("buy_and_hold"), "data.py": "#" * (MAX_FILE_BYTES + 1)}, author)
    assert error.file == "data.py" and "the limit is 1,048,576 (1 MB)" in error.message


@pytest.mark.parametrize("name", [".hidden.py", "sub/dir.py", "my helper.py", "helper.pyc"])
def test_bad_helper_names(author, name):
    error = only_error({**bundle_files("buy_and_hold"), name: ""}, author)
    assert error.file == name


def test_a_data_file_is_refused(author):
    error = only_error({**bundle_files("buy_and_hold"), "prices.csv": "a,b\n"}, author)
    assert error.file == "prices.csv" and "only Python files" in error.message


def test_a_helper_hiding_the_sdk_is_refused(author):
    error = only_error({**bundle_files("buy_and_hold"), "strategies.py": ""}, author)
    assert error.file == "strategies.py" and "hides the SDK" in error.message


def test_all_problems_are_reported_at_once(author):
    files = {
        "strategy.py": "def broken(:\n",
        "config_schema.json": '{"type": "object", "properties": {"s": {"type": "string", "x-lookout-type": "symbol"}}}',
        "bad name.py": "",
    }
    errors = publish_errors(files, author)
    assert {error.file for error in errors} == {"strategy.py", "config_schema.json", "bad name.py"}


def test_a_refused_publish_stores_nothing(author):
    strategy = StrategyFactory(files={"strategy.py": "x = 1\n", "config_schema.json": SCHEMA_OK})
    with pytest.raises(PublishError):
        strategy_publish(strategy=strategy, user=author)
    assert not StrategyVersion.objects.exists()
    assert not AuditEvent.objects.filter(action="strategy.publish").exists()


def test_a_message_too_long_is_refused(author):
    with pytest.raises(PublishError, match="at most 300"):
        strategy_publish(strategy=StrategyFactory(), user=author, message="x" * 301)


# --- roles and audit ---------------------------------------------------------------------------


def test_a_user_without_the_author_role_is_refused_and_the_refusal_audited():
    viewer = UserFactory()
    strategy = StrategyFactory()
    with pytest.raises(PermissionDenied, match="Strategy author role"):
        strategy_publish(strategy=strategy, user=viewer)
    with pytest.raises(PermissionDenied):
        strategy_update_files(strategy=strategy, files=bundle_files("crossover_a"), user=viewer)
    with pytest.raises(PermissionDenied):
        strategy_create(name="Mine", owner=viewer)
    refused = AuditEvent.objects.filter(actor=viewer, allowed=False)
    assert sorted(event.action for event in refused) == ["strategy.create", "strategy.publish", "strategy.save"]
    assert not StrategyVersion.objects.exists() and not Strategy.objects.filter(name="Mine").exists()
    strategy.refresh_from_db()
    assert strategy.files == bundle_files("buy_and_hold")


def test_the_strategy_author_group_may_publish():
    from django.contrib.auth.models import Group

    member = UserFactory()
    member.groups.add(Group.objects.get(name="Strategy author"))
    assert strategy_publish(strategy=StrategyFactory(), user=member).number == 1


# --- create and save -----------------------------------------------------------------------------


def test_a_new_strategy_starts_from_files_that_publish(author):
    strategy = strategy_create(name="  My idea ", description="Testing", owner=author)
    assert (strategy.name, strategy.owner, strategy.files) == ("My idea", author, STARTER_FILES)
    version = strategy_publish(strategy=strategy, user=author)
    assert [parameter.name for parameter in parameters_from_schema(version.config_schema)] == ["symbol", "frequency"]
    assert load_version(version).strategy_class(None, {"symbol": "MSFT", "frequency": "day"}).on_start(None)
    assert AuditEvent.objects.filter(action="strategy.create", actor=author, allowed=True).exists()


@pytest.mark.parametrize("name, fragment", [("", "needs a name"), ("x" * 101, "at most 100"), ("strategy 0", "already exists")])
def test_strategy_names_are_checked(author, name, fragment):
    StrategyFactory(name="Strategy 0")
    with pytest.raises(ValidationError) as caught:
        strategy_create(name=name, owner=author)
    assert fragment in caught.value.message_dict["name"][0]


def test_create_refuses_bad_files(author):
    with pytest.raises(BundleInvalid) as caught:
        strategy_create(name="X", owner=author, files={"notes.txt": ""})
    assert caught.value.errors[0].file == "notes.txt"
    assert not Strategy.objects.filter(name="X").exists()


def test_saving_the_working_copy(author):
    strategy = StrategyFactory()
    strategy_update_files(strategy=strategy, files=bundle_files("crossover_a"), user=author)
    strategy.refresh_from_db()
    assert strategy.files == bundle_files("crossover_a")
    event = AuditEvent.objects.get(action="strategy.save")
    assert event.detail == {"files": ["config_schema.json", "signals.py", "strategy.py"]} and event.object_id == str(strategy.pk)


def test_saving_checks_names_and_limits_but_not_code(author):
    strategy = StrategyFactory()
    with pytest.raises(BundleInvalid) as caught:
        strategy_update_files(strategy=strategy, files={"strategy.py": "def (", "../escape.py": ""}, user=author)
    assert [error.file for error in caught.value.errors] == ["../escape.py"]
    strategy.refresh_from_db()
    assert strategy.files == bundle_files("buy_and_hold")
    # Unfinished code may be saved; publish is where it must compile.
    strategy_update_files(strategy=strategy, files={"strategy.py": "def ("}, user=author)


# --- publishing a folder ---------------------------------------------------------------------------


def test_publish_folder_creates_the_strategy_from_the_folder(tmp_path):
    version = strategy_publish_folder(folder=BUNDLES / "crossover_a", message="seed")
    strategy = version.strategy
    assert strategy.name == "Crossover A" and strategy.owner is None
    assert strategy.description == "Crossover: trades when the helper module's signal says so."
    assert (version.number, version.message, version.published_by) == (1, "seed", None)
    assert set(version.files) == {"strategy.py", "config_schema.json", "signals.py"}


def test_publish_folder_again_after_a_change(tmp_path, author):
    folder = tmp_path / "my_bundle"
    folder.mkdir()
    for name, source in bundle_files("buy_and_hold").items():
        (folder / name).write_text(source)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "strategy.cpython-311.pyc").write_bytes(b"\x00")
    (folder / "README.md").write_text("not part of the bundle")

    first = strategy_publish_folder(folder=folder, name="Hold", user=author)
    assert first.strategy.description.startswith("Buy and hold.") and set(first.files) == {"strategy.py", "config_schema.json"}
    with pytest.raises(NothingChanged):
        strategy_publish_folder(folder=folder, name="Hold", user=author)
    (folder / "notes.py").write_text("NOTE = 1\n")
    second = strategy_publish_folder(folder=folder, name="Hold", user=author, description="Holds.")
    assert second.number == 2 and second.strategy_id == first.strategy_id and "notes.py" in second.files
    assert Strategy.objects.get(name="Hold").description == "Holds."


def test_a_folder_that_fails_leaves_no_strategy_behind(tmp_path):
    (tmp_path / "strategy.py").write_text("x = 1\n")
    (tmp_path / "config_schema.json").write_text(json.dumps({"type": "object", "properties": {}}))
    with pytest.raises(PublishError) as caught:
        strategy_publish_folder(folder=tmp_path, name="Broken")
    assert "defines no Strategy class" in str(caught.value)
    assert not Strategy.objects.filter(name="Broken").exists()


def test_a_missing_folder_is_a_publish_error(tmp_path):
    with pytest.raises(PublishError, match="does not exist"):
        strategy_publish_folder(folder=tmp_path / "nope")


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "strategy.py").write_bytes(b"x = '\xff'\n")
    with pytest.raises(PublishError) as caught:
        strategy_publish_folder(folder=tmp_path)
    assert str(caught.value) == "strategy.py: is not UTF-8 text: save it as UTF-8"
