from django.apps import AppConfig


class SecuritiesConfig(AppConfig):
    name = "securities"
    verbose_name = "Security master and market data"
