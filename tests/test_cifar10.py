"""The CIFAR-10 data module: official layout, split, and every way the data can be missing or broken."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from models import cifar10
from tests.helpers import PER_CLASS, REAL_CIFAR, needs_real_cifar


def test_loads_official_layout(synthetic_cifar):
    train = cifar10.load_split("train", synthetic_cifar)
    val = cifar10.load_split("val", synthetic_cifar)
    test = cifar10.load_split("test", synthetic_cifar)
    assert train.images.shape == (10 * (PER_CLASS - 500), 32, 32, 3) and train.images.dtype == np.uint8
    assert val.images.shape == (5000, 32, 32, 3)
    assert test.images.shape == (200, 32, 32, 3) and test.labels.dtype == np.int64
    assert train.class_names == cifar10.CLASS_NAMES


def test_pixels_decode_as_rgb_planes(tmp_path, synthetic_cifar):
    """Rows are R, G, B planes of 32x32; a row with only the G plane set must decode as pure green."""
    folder = tmp_path / "one"
    shutil.copytree(synthetic_cifar, folder)
    import pickle

    row = np.zeros(3072, dtype=np.uint8)
    row[1024:2048] = 200
    batch = {b"labels": [3], b"data": row[None, :], b"batch_label": b"x", b"filenames": [b"a.png"]}
    (folder / cifar10.BATCHES_DIR / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    image = cifar10.load_split("test", folder).images[0]
    assert (image[..., 0] == 0).all() and (image[..., 1] == 200).all() and (image[..., 2] == 0).all()


def test_accepts_the_batches_folder_itself(synthetic_cifar):
    split = cifar10.load_split("test", synthetic_cifar / cifar10.BATCHES_DIR)
    assert len(split) == 200


def test_env_var_is_used(synthetic_cifar, monkeypatch):
    monkeypatch.setenv(cifar10.ENV_VAR, str(synthetic_cifar))
    assert len(cifar10.load_split("test")) == 200


def test_split_is_deterministic_stratified_and_disjoint(synthetic_cifar):
    labels = cifar10.load_split("trainval", synthetic_cifar).labels
    train_a, val_a = cifar10.stratified_split(labels)
    train_b, val_b = cifar10.stratified_split(labels)
    assert np.array_equal(train_a, train_b) and np.array_equal(val_a, val_b)
    assert np.bincount(labels[val_a], minlength=10).tolist() == [500] * 10
    assert not set(train_a) & set(val_a) and len(train_a) + len(val_a) == len(labels)
    other_train, _ = cifar10.stratified_split(labels, seed=1)
    assert not np.array_equal(other_train, train_a)


@pytest.mark.slow
@needs_real_cifar
def test_real_split_is_45k_5k_and_checksums_match():
    batches = cifar10.find_batches_dir(REAL_CIFAR, allow_download=False)
    cifar10.verify_checksums(batches)
    train = cifar10.load_split("train", REAL_CIFAR)
    val = cifar10.load_split("val", REAL_CIFAR)
    assert len(train) == 45_000 and len(val) == 5_000
    assert np.bincount(train.labels).tolist() == [4500] * 10
    assert np.bincount(val.labels).tolist() == [500] * 10


def test_missing_file_names_the_file(tmp_path, synthetic_cifar):
    folder = tmp_path / "partial"
    shutil.copytree(synthetic_cifar, folder)
    (folder / cifar10.BATCHES_DIR / "data_batch_3").unlink()
    with pytest.raises(cifar10.Cifar10Error, match=r"data_batch_3.*missing.*--data-dir"):
        cifar10.load_split("train", folder)


@pytest.mark.parametrize("garbage", [b"", b"not a pickle at all", b"\x80\x02}q\x00(X"])
def test_corrupt_pickle_is_a_clear_error(tmp_path, synthetic_cifar, garbage):
    folder = tmp_path / "corrupt"
    shutil.copytree(synthetic_cifar, folder)
    (folder / cifar10.BATCHES_DIR / "test_batch").write_bytes(garbage)
    with pytest.raises(cifar10.Cifar10Error, match=r"test_batch.*corrupt") as info:
        cifar10.load_split("test", folder)
    assert info.value.__cause__ is None  # no pickle traceback chained to the user's error


def test_wrong_content_is_a_clear_error(tmp_path, synthetic_cifar):
    import pickle

    folder = tmp_path / "wrong"
    shutil.copytree(synthetic_cifar, folder)
    (folder / cifar10.BATCHES_DIR / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 5))}))
    with pytest.raises(cifar10.Cifar10Error, match="malformed"):
        cifar10.load_split("test", folder)


def test_directory_without_data(tmp_path):
    with pytest.raises(cifar10.Cifar10Error, match="neither"):
        cifar10.load_split("test", tmp_path)
    with pytest.raises(cifar10.Cifar10Error, match="no such directory"):
        cifar10.load_split("test", tmp_path / "nope")


def test_no_copy_and_no_download_allowed(tmp_path):
    with pytest.raises(cifar10.Cifar10Error, match="CIFAR10_DIR"):
        cifar10.load_split("test", allow_download=False)


def make_tarball(synthetic_cifar: Path, dest: Path) -> tuple[Path, str]:
    tarball = dest / cifar10.TARBALL
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(synthetic_cifar / cifar10.BATCHES_DIR, arcname=cifar10.BATCHES_DIR)
    return tarball, hashlib.md5(tarball.read_bytes()).hexdigest()


def test_tarball_with_wrong_md5_is_rejected(tmp_path, synthetic_cifar):
    make_tarball(synthetic_cifar, tmp_path)
    with pytest.raises(cifar10.Cifar10Error, match=r"cifar-10-python.tar.gz: md5 is"):
        cifar10.load_split("test", tmp_path)


def test_tarball_is_verified_and_extracted(tmp_path, synthetic_cifar, monkeypatch):
    _, md5 = make_tarball(synthetic_cifar, tmp_path)
    monkeypatch.setattr(cifar10, "TARBALL_MD5", md5)
    assert len(cifar10.load_split("test", tmp_path)) == 200
    assert (tmp_path / cifar10.BATCHES_DIR / "data_batch_5").is_file()


@pytest.fixture()
def tarball_server(tmp_path, synthetic_cifar):
    """A local HTTP server handing out a CIFAR-10 tarball built from the synthetic data."""
    served = tmp_path / "served"
    served.mkdir()
    _, md5 = make_tarball(synthetic_cifar, served)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/{cifar10.TARBALL}", md5
    server.shutdown()


def test_download_checks_md5_and_shows_progress(tmp_path, tarball_server, monkeypatch, capsys):
    url, md5 = tarball_server
    monkeypatch.setattr(cifar10, "TARBALL_MD5", md5)
    monkeypatch.setattr(cifar10, "URL", url)
    split = cifar10.load_split("test")  # nothing local: downloads into the (temporary) default cache
    assert len(split) == 200
    assert "Downloading cifar-10-python.tar.gz" in capsys.readouterr().err
    assert (cifar10.DEFAULT_CACHE / cifar10.BATCHES_DIR / "test_batch").is_file()


def test_download_with_wrong_md5_fails(tmp_path, tarball_server):
    url, _ = tarball_server
    with pytest.raises(cifar10.Cifar10Error, match="md5"):
        cifar10.download(tmp_path / "dl", url=url)


def test_offline_download_is_a_clear_error(tmp_path):
    with pytest.raises(cifar10.Cifar10Error, match=r"Could not download.*offline.*--data-dir"):
        cifar10.download(tmp_path / "dl", url="http://127.0.0.1:9/cifar-10-python.tar.gz")
    assert not list((tmp_path / "dl").glob("*.part"))
