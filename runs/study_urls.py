from django.urls import path

from runs import study_views

app_name = "optimize"

urlpatterns = [
    path("", study_views.studies_page, name="list"),
    path("new", study_views.study_new, name="new"),
    path("<int:study_id>/", study_views.study_page, name="detail"),
    path("<int:study_id>/kill", study_views.study_kill_action, name="kill"),
]
