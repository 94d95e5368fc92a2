"""Every route under /api/: the v1 endpoints, the OpenAPI schema, the docs page and the console's
API token page. Unknown paths answer a JSON 404 in the API's error shape."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

from config.api import api_docs_page, api_not_found, api_tokens_page
from runs import api as runs_api
from securities import api as securities_api
from strategies import api as strategies_api

v1 = [
    path("runs/", runs_api.RunListView.as_view(), name="api-runs"),
    path("runs/<int:run_id>/", runs_api.RunDetailView.as_view(), name="api-run"),
    path("runs/<int:run_id>/start", runs_api.RunStartView.as_view(), name="api-run-start"),
    path("runs/<int:run_id>/kill", runs_api.RunKillView.as_view(), name="api-run-kill"),
    path("runs/<int:run_id>/copy", runs_api.RunCopyView.as_view(), name="api-run-copy"),
    path("runs/<int:run_id>/reset", runs_api.RunResetView.as_view(), name="api-run-reset"),
    path("runs/<int:run_id>/performance", runs_api.RunPerformanceView.as_view(), name="api-run-performance"),
    path("runs/<int:run_id>/equity", runs_api.RunEquityView.as_view(), name="api-run-equity"),
    path("runs/<int:run_id>/positions", runs_api.RunPositionsView.as_view(), name="api-run-positions"),
    path("runs/<int:run_id>/orders", runs_api.RunOrdersView.as_view(), name="api-run-orders"),
    path("runs/<int:run_id>/orders.csv", runs_api.RunOrdersCsvView.as_view(), name="api-run-orders-csv"),
    path("runs/<int:run_id>/issues", runs_api.RunIssuesView.as_view(), name="api-run-issues"),
    path("runs/<int:run_id>/logs", runs_api.RunLogsView.as_view(), name="api-run-logs"),
    path("studies/", runs_api.StudyListView.as_view(), name="api-studies"),
    path("studies/<int:study_id>/", runs_api.StudyDetailView.as_view(), name="api-study"),
    path("studies/<int:study_id>/trials", runs_api.StudyTrialsView.as_view(), name="api-study-trials"),
    path("studies/<int:study_id>/kill", runs_api.StudyKillView.as_view(), name="api-study-kill"),
    path("strategies/", strategies_api.StrategyListView.as_view(), name="api-strategies"),
    path("strategies/<int:strategy_id>/", strategies_api.StrategyDetailView.as_view(), name="api-strategy"),
    path("strategies/<int:strategy_id>/versions/", strategies_api.StrategyVersionListView.as_view(), name="api-strategy-versions"),
    path("strategies/<int:strategy_id>/versions/<int:number>/", strategies_api.StrategyVersionDetailView.as_view(), name="api-strategy-version"),
    path("strategies/<int:strategy_id>/publish", strategies_api.StrategyPublishView.as_view(), name="api-strategy-publish"),
    path("securities/validate", securities_api.SecurityValidateView.as_view(), name="api-securities-validate"),
    path("securities/search", securities_api.SecuritySearchView.as_view(), name="api-securities-search"),
]

urlpatterns = [
    path("v1/", include(v1)),
    # The API's shape is no secret: anyone may read the schema and the docs page.
    path("schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny], authentication_classes=[]), name="api-schema"),
    path("docs/", api_docs_page, name="api-docs"),
    path("tokens/", api_tokens_page, name="api-tokens"),
    re_path(r"^.*$", api_not_found),
]
