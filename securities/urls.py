from django.urls import path

from securities import views

app_name = "securities"

urlpatterns = [
    path("validate", views.security_validate_view, name="validate"),
    path("search", views.security_search_view, name="search"),
]
