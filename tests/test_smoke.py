from securities.models import AssetType, BarFrequency
from strategies.sdk import enums


def test_database_choices_match_the_sdk_enums():
    assert set(AssetType.values) == {m.value for m in enums.AssetType}
    assert set(BarFrequency.values) == {m.value for m in enums.BarFrequency}
