"""The blobs of stored generations (dabc.storage.npz): numpy's npz format, written directly."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from dabc.storage import npz


def _arrays():
    rng = np.random.default_rng(0)
    return {"theta": rng.normal(size=(100, 3)), "weight": np.full(100, 0.01),
            "stats": np.asfortranarray(rng.normal(size=(100, 2))), "id": np.arange(100),
            "model": np.zeros(0, np.int16), "flag": np.array(True)}


def test_numpy_and_zipfile_read_what_pack_writes():
    arrays = _arrays()
    blob = npz.pack(arrays)
    assert zipfile.ZipFile(io.BytesIO(blob)).testzip() is None
    with np.load(io.BytesIO(blob), allow_pickle=False) as f:
        assert f.files == list(arrays)
        for k, v in arrays.items():
            np.testing.assert_array_equal(f[k], v)
            assert f[k].dtype == v.dtype and f[k].shape == v.shape
    # each member is exactly the .npy file numpy writes
    ref = io.BytesIO()
    np.savez(ref, **arrays)
    with zipfile.ZipFile(io.BytesIO(blob)) as ours, zipfile.ZipFile(ref) as theirs:
        for name in theirs.namelist():
            assert ours.read(name) == theirs.read(name)


def test_the_same_arrays_give_the_same_bytes():
    assert npz.pack(_arrays()) == npz.pack(_arrays())


def test_unpack_reads_numpy_savez_blobs_and_refuses_other_bytes():
    ref = io.BytesIO()
    np.savez(ref, a=np.arange(3))
    np.testing.assert_array_equal(npz.unpack(ref.getvalue())["a"], np.arange(3))
    with pytest.raises(ValueError, match="not an npz archive"):
        npz.unpack(b"SQLite format 3\x00")


def test_object_arrays_are_refused():
    with pytest.raises(ValueError):
        npz.pack({"x": np.array([{"a": 1}], dtype=object)})


def test_archives_beyond_the_direct_limit_are_numpys_zip64(monkeypatch):
    monkeypatch.setattr(npz, "_DIRECT_LIMIT", 100)
    blob = npz.pack(_arrays())
    np.testing.assert_array_equal(npz.unpack(blob)["theta"], _arrays()["theta"])
