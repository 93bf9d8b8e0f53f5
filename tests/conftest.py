import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

SHARED_DATA = os.environ.get(
    "KD_DET_SHARED_DATA",
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"),
)


@pytest.fixture
def shared_data():
    """../shared/data beside the project; tests that need it skip when it is absent."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set KD_DET_SHARED_DATA)")
    return os.path.abspath(SHARED_DATA)


@pytest.fixture
def catalog_names():
    """Names a test registers; removed from Detectron2's catalogs afterwards."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    names = []
    yield names
    for name in names:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


@pytest.fixture
def one_thread():
    """Tiny convolutions on two shared cores stall with two threads; run with one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
