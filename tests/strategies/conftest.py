import pytest

from tests.strategies.factories import AuthorFactory


@pytest.fixture
def author():
    """A user with the Strategy author role."""
    return AuthorFactory()
