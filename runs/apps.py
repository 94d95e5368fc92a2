from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self):
        from django.conf import settings

        from runs.engine import sessions

        sessions.cache_dir = settings.VAR_DIR / "cache"
