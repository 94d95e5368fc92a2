from django.urls import path

from strategies import views

app_name = "strategies"

urlpatterns = [
    path("", views.strategies_page, name="list"),
    path("new", views.strategy_new, name="new"),
    path("<int:strategy_id>/edit", views.strategy_edit, name="edit"),
    path("<int:strategy_id>/save", views.strategy_save, name="save"),
    path("<int:strategy_id>/files", views.strategy_files_action, name="files"),
    path("<int:strategy_id>/publish", views.strategy_publish_action, name="publish"),
    path("<int:strategy_id>/schema-check", views.strategy_schema_check, name="schema-check"),
    path("<int:strategy_id>/preview", views.strategy_preview, name="preview"),
    path("<int:strategy_id>/versions/", views.strategy_versions, name="versions"),
    path("<int:strategy_id>/versions/diff", views.strategy_versions_diff, name="diff"),
    path("<int:strategy_id>/versions/<int:number>/", views.strategy_version_page, name="version"),
]
