from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="runs:list", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("runs/", include("runs.urls")),
    path("optimize/", include("runs.study_urls")),
    path("securities/", include("securities.urls")),
    path("strategies/", include("strategies.urls")),
    path("api/", include("config.api_urls")),
    path("admin/", admin.site.urls),
]
