import pytest


def pytest_addoption(parser):
    parser.addoption("--vectors-full", action="store_true", default=False,
                     help="run every MOO test vector (slow) instead of a sample per file")


@pytest.fixture
def vectors_full(request):
    return request.config.getoption("--vectors-full")
