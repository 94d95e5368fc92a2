import pytest
from django.urls import reverse

from strategies.models import Strategy
from strategies.services import STARTER_FILES
from tests.strategies.factories import StrategyVersionFactory

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore:No directory at:UserWarning")]


def test_versions_are_read_only_in_the_admin(admin_client):
    version = StrategyVersionFactory()
    listing = admin_client.get(reverse("admin:strategies_strategyversion_changelist"))
    assert listing.status_code == 200 and version.content_hash[:12] in listing.content.decode()
    page = admin_client.get(reverse("admin:strategies_strategyversion_change", args=[version.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "Subscribe(self.config[" in body and 'name="_save"' not in body
    assert admin_client.get(reverse("admin:strategies_strategyversion_add")).status_code == 403
    assert admin_client.post(reverse("admin:strategies_strategyversion_delete", args=[version.pk]), {"post": "yes"}).status_code == 403
    response = admin_client.post(reverse("admin:strategies_strategyversion_change", args=[version.pk]), {"message": "changed"})
    assert response.status_code == 403


def test_a_strategy_added_in_the_admin_gets_the_starter_files(admin_client, admin_user):
    response = admin_client.post(reverse("admin:strategies_strategy_add"), {"name": "From admin", "description": "", "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0"})
    assert response.status_code == 302, response.content.decode()[:2000]
    strategy = Strategy.objects.get(name="From admin")
    assert strategy.files == STARTER_FILES and strategy.owner == admin_user
    listing = admin_client.get(reverse("admin:strategies_strategy_changelist") + "?q=admin")
    assert "From admin" in listing.content.decode()
