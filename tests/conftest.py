"""Fixtures shared across the test folders: the real-data folder, Detectron2 catalog
clean-up, one torch thread, and the small data sets of the auxiliary trainers."""
import glob
import os

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
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


@pytest.fixture
def fashion_mnist():
    """The Fashion-MNIST IDX files of the Debian package; tests skip when absent."""
    if not glob.glob(os.path.join(FASHION_MNIST, "train-images-idx3-ubyte*")):
        pytest.skip(f"Fashion-MNIST IDX files absent from {FASHION_MNIST} "
                    "(apt-get install dataset-fashion-mnist)")
    return FASHION_MNIST


@pytest.fixture(scope="session")
def olivetti_mat(tmp_path_factory):
    """4 identities x 10 faces in the Olivetti layout (columns = column-major 64x64 faces):
    each identity a bright square at its own place, plus noise."""
    import scipy.io

    rng = np.random.default_rng(0)
    faces = []
    for person in range(4):
        for _ in range(10):
            img = rng.integers(0, 60, (64, 64))
            r, c = 8 + 24 * (person // 2), 8 + 24 * (person % 2)
            img[r:r + 24, c:c + 24] += 180
            faces.append(img.astype(np.uint8).flatten(order="F"))
    path = tmp_path_factory.mktemp("olivetti") / "faces.mat"
    scipy.io.savemat(str(path), {"faces": np.stack(faces, 1)})
    return str(path)


@pytest.fixture
def sr_images(tmp_path):
    """Four small smooth colour images (an SR train and test set at once)."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        low = torch.rand(1, 3, 5, 6, generator=g)
        img = torch.nn.functional.interpolate(low, size=(40, 46), mode="bicubic")
        arr = (img[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
        Image.fromarray(arr).save(folder / f"im{i}.png")
    return str(folder)
