import pytest

from tests.securities.factories import BarFactory, BarImportFactory

pytestmark = pytest.mark.django_db


def test_the_admin_lists_securities_bars_and_imports(admin_client):
    bar = BarFactory(security__symbol="MSFT", security__name="Microsoft")
    BarImportFactory(security=bar.security)
    for path, text in (
        ("/admin/securities/security/?q=micro", "Microsoft"),
        ("/admin/securities/bar/?q=MSFT&frequency__exact=minute", "MSFT"),
        ("/admin/securities/barimport/", "MSFT_1d.csv.gz"),
    ):
        response = admin_client.get(path)
        assert response.status_code == 200, path
        assert text in response.content.decode()


def test_bar_imports_are_read_only(admin_client):
    record = BarImportFactory()
    assert admin_client.get("/admin/securities/barimport/add/").status_code == 403
    response = admin_client.post(f"/admin/securities/barimport/{record.pk}/change/", {"source": "edited"})
    assert response.status_code == 403
    record.refresh_from_db()
    assert record.source == "MSFT_1d.csv.gz"


def test_a_security_saved_in_the_admin_gets_an_upper_case_symbol(admin_client):
    response = admin_client.post(
        "/admin/securities/security/add/",
        {
            "symbol": " nvda ",
            "name": "NVIDIA",
            "asset_type": "equity",
            "currency": "USD",
            "tick_size": "0.01",
            "multiplier": "1",
            "active": "on",
        },
    )
    assert response.status_code == 302
    from securities.models import Security

    assert Security.objects.get(name="NVIDIA").symbol == "NVDA"
