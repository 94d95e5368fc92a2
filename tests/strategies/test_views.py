"""The Strategies pages and the editor's JSON endpoints: list, New Strategy, save, add/rename/
delete helpers, publish (success and every kind of failure, each named by file and line), the
parameters preview and check, versions, files and diffs, and the author-only writes."""

import json

import pytest
from django.urls import reverse

import strategies.sdk as sdk
from issues.models import AuditEvent
from strategies.bundle import MAX_FILE_BYTES, MAX_FILES
from strategies.models import Strategy, StrategyVersion
from strategies.services import STARTER_FILES, strategy_publish
from tests.runs.factories import RunFactory
from tests.strategies.factories import AuthorFactory, StrategyFactory, StrategyVersionFactory, UserFactory, bundle_files

pytestmark = pytest.mark.django_db

BUY_AND_HOLD = bundle_files("buy_and_hold")
SYMBOL_FUTURE_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {
            "contract": {"type": "string", "title": "Contract", "x-lookout-type": "symbol", "x-lookout-asset-type": "FUTURE", "default": "ES"},
            "lookback": {"type": "integer", "title": "Lookback", "minimum": 2, "maximum": 50, "default": 20},
        },
        "required": ["contract"],
    },
    indent=2,
)


@pytest.fixture
def author():
    return AuthorFactory()


@pytest.fixture
def author_client(client, author):
    client.force_login(author)
    return client


@pytest.fixture
def viewer_client(client):
    client.force_login(UserFactory())
    return client


def post_json(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def publish(client, strategy, files=None, message=""):
    body = {"message": message} if files is None else {"files": files, "message": message}
    return post_json(client, reverse("strategies:publish", args=[strategy.pk]), body)


def errors_of(response):
    return [(error["file"], error["line"], error["message"]) for error in response.json()["errors"]]


# --- list and New Strategy -------------------------------------------------------------------------


def test_the_list_shows_each_strategy_with_its_latest_version_runs_and_publisher(viewer_client):
    publisher = UserFactory(username="alice")
    strategy = StrategyFactory(name="Momentum", description="Buys strength.")
    StrategyVersionFactory(strategy=strategy)
    latest = StrategyVersionFactory(strategy=strategy, files={**BUY_AND_HOLD, "helpers.py": "X = 1\n"}, published_by=publisher)
    RunFactory(strategy_version=latest)
    RunFactory(strategy_version=latest)
    StrategyFactory(name="Unpublished")

    response = viewer_client.get(reverse("strategies:list"))

    assert response.status_code == 200
    rows = {strategy.name: strategy for strategy in response.context["strategies"]}
    assert rows["Momentum"].latest_version_number == 2
    assert rows["Momentum"].run_count == 2
    assert rows["Momentum"].last_published_by == "alice"
    assert rows["Unpublished"].latest_version_number is None
    html = response.content.decode()
    assert "Buys strength." in html and "v2" in html and "not published" in html
    assert 'disabled aria-describedby="new-strategy-why"' in html  # a viewer cannot create


def test_new_strategy_starts_from_the_starter_files_and_opens_the_editor(author_client, author):
    response = author_client.post(reverse("strategies:new"), {"name": "Trend", "description": "Follows trends."})

    strategy = Strategy.objects.get(name="Trend")
    assert response.status_code == 302
    assert response.url == reverse("strategies:edit", args=[strategy.pk])
    assert strategy.files == STARTER_FILES
    assert strategy.owner == author
    # The starter publishes as it is.
    assert strategy_publish(strategy=strategy, user=author).number == 1


def test_new_strategy_with_a_taken_name_shows_the_error_in_the_dialog(author_client):
    StrategyFactory(name="Trend")
    response = author_client.post(reverse("strategies:new"), {"name": "trend"})
    assert response.status_code == 422
    assert "already exists: choose another name" in response.content.decode()
    assert Strategy.objects.count() == 1


def test_new_strategy_is_refused_to_a_viewer_and_audited(viewer_client):
    response = viewer_client.post(reverse("strategies:new"), {"name": "Sneaky"})
    assert response.status_code == 403
    assert "Strategy author role" in response.content.decode()
    assert not Strategy.objects.exists()
    assert AuditEvent.objects.filter(action="strategy.create", allowed=False).exists()


# --- editor page --------------------------------------------------------------------------------------


def test_the_editor_carries_the_files_and_lists_every_sdk_import(author_client):
    strategy = StrategyFactory(files={**BUY_AND_HOLD, "signals.py": "LIMIT = 3\n"})
    response = author_client.get(reverse("strategies:edit", args=[strategy.pk]))

    assert response.status_code == 200
    editor = response.context["editor"]
    assert editor["files"] == strategy.files and editor["canEdit"] is True
    imported = [item.name for item in response.context["sdk_imports"]]
    assert imported == list(sdk.__all__)
    html = response.content.decode()
    assert "Strategy Parameters" in html and "Available imports" in html
    place_order = next(item for item in response.context["sdk_imports"] if item.name == "PlaceOrder")
    assert "notional" in place_order.signature and "Exactly one of" in place_order.summary
    intent = next(item for item in response.context["sdk_imports"] if item.name == "Intent")
    assert intent.members == ("BUY", "SELL", "CLOSE", "BUY_TO_CLOSE", "SELL_TO_CLOSE")


def test_a_viewer_may_read_the_editor_but_not_edit(viewer_client):
    strategy = StrategyFactory()
    response = viewer_client.get(reverse("strategies:edit", args=[strategy.pk]))
    assert response.status_code == 200
    assert response.context["editor"]["canEdit"] is False
    html = response.content.decode()
    assert "Read only" in html and 'id="publish-button"' not in html


def test_an_unknown_strategy_is_404(author_client):
    assert author_client.get(reverse("strategies:edit", args=[999])).status_code == 404


# --- save ------------------------------------------------------------------------------------------


def test_save_stores_the_working_copy_without_publishing_and_audits(author_client, author):
    strategy = StrategyFactory()
    files = {**strategy.files, "strategy.py": strategy.files["strategy.py"] + "\n# tuned\n"}

    response = post_json(author_client, reverse("strategies:save", args=[strategy.pk]), {"files": files})

    assert response.status_code == 200
    strategy.refresh_from_db()
    assert strategy.files == files
    assert not StrategyVersion.objects.filter(strategy=strategy).exists()
    assert AuditEvent.objects.filter(action="strategy.save", actor=author, allowed=True, object_id=str(strategy.pk)).exists()


def test_save_refuses_bad_names_naming_the_file(author_client):
    strategy = StrategyFactory()
    before = dict(strategy.files)
    response = post_json(author_client, reverse("strategies:save", args=[strategy.pk]), {"files": {**before, ".hidden.py": "", "data.csv": "a,b"}})

    assert response.status_code == 400
    named = {file for file, _line, _message in errors_of(response)}
    assert named == {".hidden.py", "data.csv"}
    strategy.refresh_from_db()
    assert strategy.files == before


def test_save_by_a_viewer_is_refused_unchanged_and_audited(viewer_client):
    strategy = StrategyFactory()
    before = dict(strategy.files)
    response = post_json(viewer_client, reverse("strategies:save", args=[strategy.pk]), {"files": {**before, "strategy.py": "x = 1\n"}})

    assert response.status_code == 403
    assert "Strategy author role" in errors_of(response)[0][2]
    strategy.refresh_from_db()
    assert strategy.files == before
    assert AuditEvent.objects.filter(action="strategy.save", allowed=False, object_id=str(strategy.pk)).exists()


# --- add, rename, delete helpers ---------------------------------------------------------------------


def files_action(client, strategy, **body):
    return post_json(client, reverse("strategies:files", args=[strategy.pk]), body)


def test_add_rename_and_delete_a_helper(author_client):
    strategy = StrategyFactory()

    added = files_action(author_client, strategy, action="add", name="signals.py")
    assert added.status_code == 200 and "signals.py" in added.json()["files"]
    strategy.refresh_from_db()
    assert strategy.files["signals.py"].startswith('"""signals')

    renamed = files_action(author_client, strategy, action="rename", name="signals.py", new_name="indicators_local.py")
    assert renamed.status_code == 200
    strategy.refresh_from_db()
    assert "signals.py" not in strategy.files and strategy.files["indicators_local.py"].startswith('"""signals')

    deleted = files_action(author_client, strategy, action="delete", name="indicators_local.py")
    assert deleted.status_code == 200
    strategy.refresh_from_db()
    assert sorted(strategy.files) == ["config_schema.json", "strategy.py"]


@pytest.mark.parametrize(
    ("body", "file", "fragment"),
    [
        ({"action": "add", "name": "1 bad name.py"}, "1 bad name.py", "invalid file name"),
        ({"action": "add", "name": "notes.txt"}, "notes.txt", "only Python files"),
        ({"action": "add", "name": "strategies.py"}, "strategies.py", "hides the SDK"),
        ({"action": "add", "name": "strategy.py"}, "strategy.py", "already exists"),
        ({"action": "rename", "name": "strategy.py", "new_name": "main.py"}, "strategy.py", "required in every strategy"),
        ({"action": "delete", "name": "config_schema.json"}, "config_schema.json", "required in every strategy"),
        ({"action": "rename", "name": "helpers.py", "new_name": "-x.txt"}, "-x.txt", "only Python files"),
        ({"action": "rename", "name": "helpers.py", "new_name": "strategy.py"}, "strategy.py", "already exists"),
        ({"action": "delete", "name": "ghost.py"}, "ghost.py", "no such file"),
    ],
)
def test_file_name_rules_are_enforced_with_the_reason(author_client, body, file, fragment):
    strategy = StrategyFactory(files={**BUY_AND_HOLD, "helpers.py": "X = 1\n"})
    before = dict(strategy.files)
    response = files_action(author_client, strategy, **body)

    assert response.status_code == 400
    assert any(error_file == file and fragment in message for error_file, _line, message in errors_of(response)), errors_of(response)
    strategy.refresh_from_db()
    assert strategy.files == before


def test_file_actions_are_refused_to_a_viewer(viewer_client):
    strategy = StrategyFactory()
    response = files_action(viewer_client, strategy, action="add", name="signals.py")
    assert response.status_code == 403
    strategy.refresh_from_db()
    assert "signals.py" not in strategy.files


# --- publish -------------------------------------------------------------------------------------------


def test_publish_saves_then_publishes_and_offers_create_run(author_client, author):
    strategy = StrategyFactory(files=dict(STARTER_FILES))
    files = {**strategy.files, "config_schema.json": SYMBOL_FUTURE_SCHEMA}

    response = publish(author_client, strategy, files, message="futures contract")

    assert response.status_code == 200
    version = StrategyVersion.objects.get(strategy=strategy)
    payload = response.json()
    assert payload["message"] == "Published v1"
    assert payload["version"] == {"id": version.pk, "number": 1}
    assert payload["create_run_url"] == f"/runs/new?version={version.pk}"
    assert payload["version_url"] == f"/strategies/{strategy.pk}/versions/1/"
    assert version.message == "futures contract" and version.published_by == author
    assert version.config_schema["properties"]["contract"]["x-lookout-asset-type"] == "FUTURE"
    assert version.config_schema["x-lookout-order"] == ["contract", "lookback"]
    assert AuditEvent.objects.filter(action="strategy.publish", allowed=True, detail__version=1).exists()

    again = publish(author_client, strategy, {**files, "strategy.py": files["strategy.py"] + "\n"})
    assert again.json()["message"] == "Published v2"


SYNTAX_ERROR = "from strategies.sdk import StrategyBase\n\n\nclass Strategy(StrategyBase):\n    def on_start(self, now)\n        return []\n"


@pytest.mark.parametrize(
    ("changes", "file", "line", "fragment"),
    [
        ({"strategy.py": SYNTAX_ERROR}, "strategy.py", 5, "syntax error"),
        ({"helpers.py": "def broken(:\n    pass\n"}, "helpers.py", 1, "syntax error"),
        ({"strategy.py": "import math\n\nVALUE = 1 / 0\n"}, "strategy.py", 3, "ZeroDivisionError"),
        ({"strategy.py": "from strategies.sdk import StrategyBase\n\nX = 1\n"}, "strategy.py", None, "defines no Strategy class"),
        ({"strategy.py": "class Strategy:\n    def on_start(self, now):\n        return []\n"}, "strategy.py", 1, "must subclass StrategyBase"),
        (
            {"strategy.py": "from strategies.sdk import StrategyBase\n\n\nclass Strategy(StrategyBase):\n    pass\n"},
            "strategy.py",
            4,
            "does not define on_start",
        ),
        ({"config_schema.json": '{\n  "type": "object",\n  "properties": {\n    "x": {"type": "integer",}\n  }\n}\n'}, "config_schema.json", 4, "invalid JSON"),
        (
            {"config_schema.json": '{\n  "type": "object",\n  "properties": {\n    "s": {"type": "string", "x-lookout-type": "symbol", "x-lookout-asset-type": "BOND"}\n  }\n}\n'},
            "config_schema.json",
            4,
            '"x-lookout-asset-type" must be "EQUITY" or "FUTURE"',
        ),
        (
            {"config_schema.json": '{\n  "type": "object",\n  "properties": {\n    "n": {\n      "type": "integer",\n      "minimum": 5,\n      "default": 1\n    }\n  }\n}\n'},
            "config_schema.json",
            7,
            "default must be at least 5",
        ),
    ],
)
def test_every_publish_failure_names_its_file_and_line(author_client, changes, file, line, fragment):
    strategy = StrategyFactory()
    response = publish(author_client, strategy, {**strategy.files, **changes})

    assert response.status_code == 400
    found = errors_of(response)
    assert any(error_file == file and error_line == line and fragment in message for error_file, error_line, message in found), found
    assert not StrategyVersion.objects.filter(strategy=strategy).exists()
    # The working copy was saved first, so the author keeps what they wrote.
    strategy.refresh_from_db()
    assert strategy.files[file] == changes[file]


def test_publish_without_the_schema_or_the_strategy_names_the_missing_file(author_client):
    strategy = StrategyFactory()
    response = publish(author_client, strategy, {"helpers.py": "X = 1\n"})
    assert response.status_code == 400
    files = {file for file, _line, _message in errors_of(response)}
    assert {"strategy.py", "config_schema.json"} <= files


def test_publish_refuses_files_breaking_the_bundle_rules(author_client):
    strategy = StrategyFactory()
    too_many = {**strategy.files, **{f"h{n}.py": "" for n in range(MAX_FILES)}}
    response = publish(author_client, strategy, too_many)
    assert response.status_code == 400
    assert f"at most {MAX_FILES}" in errors_of(response)[0][2]

    too_big = {**strategy.files, "big.py": "#" * (MAX_FILE_BYTES + 1)}
    response = publish(author_client, strategy, too_big)
    assert response.status_code == 400
    assert errors_of(response)[0][0] == "big.py" and "1 MB" in errors_of(response)[0][2]


def test_publishing_an_unchanged_copy_says_nothing_changed(author_client):
    strategy = StrategyFactory()
    assert publish(author_client, strategy).status_code == 200
    response = publish(author_client, strategy)
    assert response.status_code == 409
    assert "nothing changed since v1" in errors_of(response)[0][2]
    assert StrategyVersion.objects.filter(strategy=strategy).count() == 1


def test_a_publish_message_too_long_is_refused(author_client):
    strategy = StrategyFactory()
    response = publish(author_client, strategy, message="x" * 301)
    assert response.status_code == 400
    assert "at most 300" in errors_of(response)[0][2]


def test_publish_by_a_viewer_is_refused_and_audited(viewer_client):
    strategy = StrategyFactory()
    response = publish(viewer_client, strategy)
    assert response.status_code == 403
    assert not StrategyVersion.objects.exists()
    assert AuditEvent.objects.filter(action="strategy.publish", allowed=False, object_id=str(strategy.pk)).exists()


# --- parameters panel ------------------------------------------------------------------------------------


def test_the_preview_draws_the_run_form_fields(author_client):
    strategy = StrategyFactory()
    response = author_client.post(reverse("strategies:preview", args=[strategy.pk]), SYMBOL_FUTURE_SCHEMA, content_type="text/plain")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="preview-strategy-contract"' in html and "asset-future" in html
    assert 'id="preview-strategy-lookback"' in html and 'min="2"' in html and 'max="50"' in html
    assert 'id="param-' not in html  # the editor's rows own those anchors


def test_the_preview_and_the_check_show_schema_errors_with_their_line(author_client):
    strategy = StrategyFactory()
    bad = '{\n  "type": "object",\n  "properties": {\n    "n": {"type": "float"}\n  }\n}\n'

    preview = author_client.post(reverse("strategies:preview", args=[strategy.pk]), bad, content_type="text/plain")
    assert preview.status_code == 422
    assert "config_schema.json:4" in preview.content.decode()

    check = author_client.post(reverse("strategies:schema-check", args=[strategy.pk]), bad, content_type="text/plain")
    assert check.status_code == 422
    assert errors_of(check)[0][:2] == ("config_schema.json", 4)

    good = author_client.post(reverse("strategies:schema-check", args=[strategy.pk]), SYMBOL_FUTURE_SCHEMA, content_type="text/plain")
    assert good.json() == {"ok": True, "parameters": ["contract", "lookback"]}


# --- versions ----------------------------------------------------------------------------------------------


def test_versions_history_lists_number_publisher_message_and_runs(viewer_client):
    strategy = StrategyFactory()
    first = StrategyVersionFactory(strategy=strategy, message="first cut", published_by=UserFactory(username="bob"))
    StrategyVersionFactory(strategy=strategy, files={**BUY_AND_HOLD, "helpers.py": "X = 1\n"}, message="add helper")
    RunFactory(strategy_version=first)

    response = viewer_client.get(reverse("strategies:versions", args=[strategy.pk]))

    assert response.status_code == 200
    versions = response.context["versions"]
    assert [(v.number, v.run_count) for v in versions] == [(2, 0), (1, 1)]
    html = response.content.decode()
    assert "first cut" in html and "add helper" in html and "bob" in html


def test_a_version_shows_its_files_read_only_and_its_runs(viewer_client):
    version = StrategyVersionFactory(files={**BUY_AND_HOLD, "helpers.py": "X = 1\n"})
    run = RunFactory(strategy_version=version)

    response = viewer_client.get(reverse("strategies:version", args=[version.strategy_id, version.number]))

    assert response.status_code == 200
    assert [name for name, _source in response.context["files"]] == ["strategy.py", "config_schema.json", "helpers.py"]
    html = response.content.decode()
    assert f'href="/runs/{run.pk}/"' in html
    assert "readonly" in html
    assert f'href="/runs/new?version={version.pk}"' in html


def test_the_diff_between_two_versions(viewer_client):
    strategy = StrategyFactory()
    StrategyVersionFactory(strategy=strategy)
    changed = BUY_AND_HOLD["strategy.py"].replace("Buy", "Purchase", 1)
    StrategyVersionFactory(strategy=strategy, files={**BUY_AND_HOLD, "strategy.py": changed, "helpers.py": "X = 1\n"})

    split = viewer_client.get(reverse("strategies:diff", args=[strategy.pk]), {"from": 1, "to": 2})
    assert split.status_code == 200
    statuses = {diff.name: diff.status for diff in split.context["diffs"]}
    assert statuses == {"strategy.py": "changed", "config_schema.json": "unchanged", "helpers.py": "added"}
    assert 'class="diff"' in split.content.decode()  # difflib's side-by-side table

    unified = viewer_client.get(reverse("strategies:diff", args=[strategy.pk]), {"from": 1, "to": 2, "view": "unified"})
    html = unified.content.decode()
    assert "+++ v2/strategy.py" in html and 'class="d-add"' in html and "Purchase" in html


def test_the_diff_needs_two_versions(viewer_client):
    version = StrategyVersionFactory()
    response = viewer_client.get(reverse("strategies:diff", args=[version.strategy_id]))
    assert response.status_code == 302
    assert response.url == reverse("strategies:versions", args=[version.strategy_id])


def test_a_missing_version_is_404(viewer_client):
    strategy = StrategyFactory()
    assert viewer_client.get(reverse("strategies:version", args=[strategy.pk, 3])).status_code == 404


def test_pages_need_a_signed_in_user(client):
    strategy = StrategyFactory()
    for url in (reverse("strategies:list"), reverse("strategies:edit", args=[strategy.pk]), reverse("strategies:versions", args=[strategy.pk])):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response.url
