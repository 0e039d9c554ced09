import pytest

from lib import data


@pytest.fixture(scope="session")
def tiny_loaders():
    """Small, fast loaders over the embedded photos (data/photos): 96 photos of the train part,
    the dev part, at 32 px."""
    return data.make_loaders("photos", size=32, batch_size=16, max_images=96, workers=0)
