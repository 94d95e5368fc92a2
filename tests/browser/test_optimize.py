"""Optimize in a real browser: from a Backtest run's Optimize button through the Create Study
dialog (live trial count, the Range… popover) to the study page, whose trials a real Celery
worker runs, then the sortable results table with the best trial and the grid heatmap.
Depends on: /usr/bin/chromium (skipped without it), live_server, the `celery_worker_process`
fixture and the helpers of tests/runs/test_study_services."""

import pytest
from playwright.sync_api import expect

from runs.models import Study, StudyStatus
from tests.runs.test_study_services import msft_with_bars, sma_base_run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_from_the_optimize_button_to_the_results_table(login, celery_worker_process):
    msft_with_bars()
    base = sma_base_run()
    page = login("Operator")
    page.goto(f"/runs/{base.pk}/")
    page.locator("#run-panel").get_by_role("link", name="Optimize").click()
    page.wait_for_url(f"**/optimize/new?base={base.pk}")
    dialog = page.locator("#new-study-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#study-base")).to_have_value(str(base.pk))

    dialog.locator("#study-description").fill("Fast and slow windows")
    dialog.locator("#values-fast").fill("3, 8")
    expect(dialog.locator("#vary-fast")).to_be_checked()
    expect(dialog.locator("#trial-count")).to_contain_text("3 trials")
    # The Range… popover writes start:stop:step; the server expands it.
    dialog.locator("#space-slow summary").click()
    dialog.locator('#space-slow [data-range="start"]').fill("15")
    dialog.locator('#space-slow [data-range="stop"]').fill("25")
    dialog.locator('#space-slow [data-range="step"]').fill("10")
    dialog.locator("#space-slow [data-range-apply]").click()
    expect(dialog.locator("#values-slow")).to_have_value("15:25:10")
    expect(dialog.locator("#trial-count")).to_contain_text("4 trials")  # 15 is the base value: left out
    dialog.locator('input[name=mode][value=grid]').check()
    expect(dialog.locator("#trial-count")).to_contain_text("4 trials: every combination")
    dialog.get_by_role("button", name="Create Study").click()

    page.wait_for_url("**/optimize/*/")
    study = Study.objects.get()
    assert page.url.endswith(f"/optimize/{study.pk}/")
    expect(page.locator("#study-body .study-status .badge.status")).to_have_text("Complete", timeout=90_000)
    rows = page.locator("#trials-table tbody tr")
    expect(rows).to_have_count(4)
    expect(page.locator("#trials-table tr.best")).to_have_count(1)
    expect(page.locator(".heatmap .heat-cell")).to_have_count(4)
    study.refresh_from_db()
    assert study.status == StudyStatus.COMPLETE

    page.locator("#trials-table thead").get_by_role("link", name="Total return").click()
    expect(page.locator('#trials-table th[aria-sort="descending"]')).to_contain_text("Total return")
    page.locator("#trials-table thead").get_by_role("link", name="Total return").click()
    expect(page.locator('#trials-table th[aria-sort="ascending"]')).to_contain_text("Total return")
    assert page.errors == []
