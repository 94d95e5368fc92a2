from django.urls import path

from runs import views

app_name = "runs"

urlpatterns = [
    path("", views.runs_page, name="list"),
    path("new", views.run_new, name="new"),
    path("<int:run_id>/", views.run_page, name="detail"),
    path("<int:run_id>/start", views.run_start_action, name="start"),
    path("<int:run_id>/kill", views.run_kill_action, name="kill"),
    path("<int:run_id>/copy", views.run_copy_action, name="copy"),
    path("<int:run_id>/reset", views.run_reset_action, name="reset"),
    path("<int:run_id>/config", views.run_config_action, name="config"),
    path("<int:run_id>/orders.csv", views.run_orders_csv, name="orders-csv"),
]
