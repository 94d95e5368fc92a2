"""The Optimize pages: the studies list, the Create Study dialog (live trial count, Form/JSON,
errors shown on their rows), the study page (progress, sortable trial table, best trial,
heatmap, Create run) and Kill, for Viewers and Operators. Depends on: the role groups of
migration runs/0002, the helpers of test_study_services; no worker (trials run in-process with
study_trial_execute where results are needed)."""

import json

import pytest
from django.contrib.auth.models import Group

from runs.models import Run, Status, Study, StudyStatus
from runs.studies import GRID
from runs.study_services import study_create, study_trial_execute
from tests.runs.factories import RunFactory
from tests.runs.test_study_services import msft_with_bars, sma_base_run

pytestmark = pytest.mark.django_db
COUNT = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "trial-count"}


@pytest.fixture
def as_role(client, django_user_model):
    def login(role: str | None):
        user = django_user_model.objects.create_user(f"user{django_user_model.objects.count()}", password="pw")
        if role:
            user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return user

    return login


@pytest.fixture
def base():
    msft_with_bars()
    return sma_base_run()


def finished_study(base, *, mode="sweep", space=None):
    study = study_create(user=None, base_run=base, description="windows", space_spec=space or {"fast": "3, 8"}, mode=mode)
    for run_id in study.trials.order_by("pk").values_list("pk", flat=True):
        study_trial_execute(run_id=run_id, study_id=study.pk)
    study.refresh_from_db()
    return study


def test_a_viewer_reads_studies_but_cannot_create_or_kill(client, as_role, base):
    study = study_create(user=None, base_run=base, description="running", space_spec={"fast": "3"})
    as_role("Viewer")
    page = client.get("/optimize/")
    assert page.status_code == 200 and "running" in page.content.decode()
    assert 'disabled aria-describedby="new-study-why"' in page.content.decode()
    assert client.get(f"/optimize/{study.pk}/").status_code == 200
    assert client.get(f"/optimize/new?base={base.pk}").status_code == 403
    assert client.post("/optimize/new", {"base": base.pk, "description": "x", "vary_fast": "on", "values_fast": "3"}).status_code == 403
    assert client.post(f"/optimize/{study.pk}/kill").status_code == 403
    study.refresh_from_db()
    assert study.status == StudyStatus.RUNNING and Study.objects.count() == 1


def test_the_dialog_opens_with_the_base_run_and_a_row_per_parameter(client, as_role, base):
    as_role("Operator")
    html = client.get(f"/optimize/new?base={base.pk}").content.decode()
    assert 'id="new-study-dialog"' in html
    assert f'<option value="{base.pk}" selected>' in html
    for name in ("symbol", "fast", "slow", "frequency"):
        assert f'name="vary_{name}"' in html
    assert "Range…" in html


def test_the_trial_count_follows_the_values_live(client, as_role, base):
    as_role("Operator")
    sweep = client.get("/optimize/new", {"base": base.pk, "vary_fast": "on", "values_fast": "3, 5, 8", "vary_slow": "on", "values_slow": "20:40:10"}, **COUNT)
    assert sweep.status_code == 200
    assert "<strong>6</strong> trials" in sweep.content.decode()  # baseline + fast 3, 8 (5 is the base) + slow 20, 30, 40
    assert "left out" in sweep.content.decode()
    grid = client.get("/optimize/new", {"base": base.pk, "mode": "grid", "vary_fast": "on", "values_fast": "3, 5, 8", "vary_slow": "on", "values_slow": "20:40:10"}, **COUNT)
    assert "<strong>9</strong> trials" in grid.content.decode()
    huge = client.get("/optimize/new", {"base": base.pk, "mode": "grid", "vary_fast": "on", "values_fast": "1:30:1", "vary_slow": "on", "values_slow": "31:60:1"}, **COUNT)
    assert "900 trials is more than the 500" in huge.content.decode()


def test_create_from_the_form_redirects_to_the_study_and_queues_the_trials(client, as_role, base):
    user = as_role("Operator")
    response = client.post("/optimize/new", {
        "base": base.pk, "description": "fast sweep", "mode": "sweep", "objective_metric": "total_return", "objective_direction": "max",
        "vary_fast": "on", "values_fast": "3, 8", "vary_slow": "", "values_slow": "99",
    }, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="study-form")
    study = Study.objects.get()
    assert response.status_code == 200 and response["HX-Redirect"] == f"/optimize/{study.pk}/"
    assert study.search_space == {"fast": [3, 8]} and study.objective_metric == "total_return" and study.created_by == user
    assert study.status == StudyStatus.RUNNING
    assert set(study.trials.values_list("status", flat=True)) == {Status.STARTING}


def test_create_from_json_and_errors_land_on_their_rows(client, as_role, base):
    as_role("Operator")
    refused = client.post("/optimize/new", {"base": base.pk, "description": "", "input": "form", "vary_fast": "on", "values_fast": "0, x"}, HTTP_HX_REQUEST="true")
    html = refused.content.decode()
    assert refused.status_code == 422
    assert "required: say what this study is for" in html and "&#x27;x&#x27; is not a number" in html
    assert Study.objects.count() == 0
    created = client.post("/optimize/new", {"base": base.pk, "description": "json", "input": "json", "mode": "grid", "space_json": json.dumps({"fast": [3, 5], "slow": "15:25:10"})})
    study = Study.objects.get()
    assert created.status_code == 302 and created["Location"] == f"/optimize/{study.pk}/"
    assert study.search_mode == GRID and study.trial_count == 4


def test_switching_to_json_carries_the_rows_over(client, as_role, base):
    as_role("Operator")
    html = client.get("/optimize/new", {"base": base.pk, "shown": "form", "input": "json", "vary_fast": "on", "values_fast": "3:9:3"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="study-form").content.decode()
    assert 'name="space_json"' in html and "&quot;fast&quot;: &quot;3:9:3&quot;" in html


def test_the_study_page_shows_sortable_trials_the_best_and_create_run(client, as_role, base):
    study = finished_study(base, space={"fast": "3, 8"})
    as_role("Operator")
    html = client.get(f"/optimize/{study.pk}/?sort=fast&dir=asc").content.decode()
    trial_ids = list(study.trials.order_by("pk").values_list("pk", flat=True))
    assert html.index(f'data-run-id="{trial_ids[1]}"') < html.index(f'data-run-id="{trial_ids[0]}"') < html.index(f'data-run-id="{trial_ids[2]}"')  # fast 3, 5, 8
    best = max(study.trials.all(), key=lambda run: run.metrics["sharpe"] if run.metrics.get("sharpe") is not None else float("-inf"))
    assert f'class="trial-row best" data-run-id="{best.pk}"' in html
    assert f'action="/runs/{trial_ids[0]}/copy"' in html
    assert "Total return" in html and "Profit factor" in html and "heatmap" not in html
    fragment = client.get(f"/optimize/{study.pk}/?sort=total_return&dir=desc", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="study-body")
    assert fragment.content.decode().strip().startswith('<section id="study-body"')


def test_a_two_parameter_grid_shows_a_heatmap_of_the_objective(client, as_role, base):
    study = finished_study(base, mode=GRID, space={"fast": "3, 5", "slow": "15, 25"})
    as_role("Viewer")
    html = client.get(f"/optimize/{study.pk}/").content.decode()
    assert 'class="heatmap"' in html and "Sharpe by fast × slow" in html
    assert html.count('class="heat-cell') == 4 and "hsl(" in html
    assert 'Create run' not in html  # a Viewer gets no Create run buttons


def test_polling_stops_once_the_study_is_finished(client, as_role, base):
    study = finished_study(base)
    as_role("Viewer")
    response = client.get(f"/optimize/{study.pk}/?poll=1", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="study-body")
    assert response.status_code == 286


def test_an_operator_kills_a_running_study(client, as_role, base):
    study = study_create(user=None, base_run=base, description="kill me", space_spec={"fast": "3"})
    as_role("Operator")
    response = client.post(f"/optimize/{study.pk}/kill", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="study-body")
    assert response.status_code == 200 and "stopped" in response["HX-Trigger"]
    study.refresh_from_db()
    assert study.status == StudyStatus.STOPPED
    assert set(Run.objects.filter(study=study).values_list("status", flat=True)) == {Status.STOPPED}
    assert client.post(f"/optimize/{study.pk}/kill", HTTP_HX_REQUEST="true").status_code == 409


def test_the_runs_optimize_button_reaches_the_dialog_for_that_run(client, as_role, base):
    as_role("Operator")
    panel = client.get(f"/runs/{base.pk}/").content.decode()
    assert f'href="/optimize/new?base={base.pk}"' in panel
    paper = RunFactory(strategy_version=base.strategy_version, mode="paper", config={"environment": {}, "strategy": {}, "core": {}})
    html = client.get(f"/optimize/new?base={paper.pk}").content.decode()
    assert "pick a Backtest run as the base" in html
