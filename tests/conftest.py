import pytest

from lib import data


@pytest.fixture(scope="session")
def builtin_root(tmp_path_factory):
    """The embedded data set, built once per test session in a temporary folder."""
    root = tmp_path_factory.mktemp("data") / "builtin"
    data.build_builtin(root)
    return root


@pytest.fixture(scope="session")
def tiny_loaders(builtin_root):
    """Small, fast loaders over the embedded photos: 96 train crops, 120 val crops at 32 px."""
    return data.make_loaders(
        "builtin", size=32, batch_size=16, max_images=96, workers=0, builtin_root=builtin_root
    )
