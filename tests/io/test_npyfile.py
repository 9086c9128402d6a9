import pickle
import zipfile

import numpy as np
import pytest

from workbench.errors import ShardError
from workbench.io.npyfile import read_npy, read_npz_member


class _Exploit:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_header_only_and_memmap(tmp_path):
    arr = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float16)
    np.save(tmp_path / "a.npy", arr)
    info = read_npy(tmp_path / "a.npy")
    assert info.shape == (7, 5) and info.dtype == np.float16 and info.mappable
    view = info.open()
    assert isinstance(view, np.memmap)
    np.testing.assert_array_equal(view, arr)


def test_pickled_npy_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    np.save(tmp_path / "evil.npy", np.array([_Exploit(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ShardError, match="pickle") as e:
        read_npy(tmp_path / "evil.npy")
    assert "evil.npy" in str(e.value)
    assert not marker.exists()


def test_truncated_file_names_file_and_row(tmp_path):
    np.save(tmp_path / "t.npy", np.ones((10, 4), np.float16))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[: len(data) - 8 * 3 - 2])  # cut into row 6
    with pytest.raises(ShardError, match="truncated") as e:
        read_npy(tmp_path / "t.npy")
    assert e.value.row == 6 and "t.npy" in str(e.value) and "row 6" in str(e.value)


def test_not_an_npy(tmp_path):
    (tmp_path / "x.npy").write_text("hello, I am text")
    with pytest.raises(ShardError, match="not a .npy file"):
        read_npy(tmp_path / "x.npy")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(ShardError):
        read_npy(tmp_path / "empty.npy")


def test_wrong_shapes_and_dtypes(tmp_path):
    np.save(tmp_path / "v.npy", np.ones(4, np.float32))
    with pytest.raises(ShardError, match="2-D"):
        read_npy(tmp_path / "v.npy")
    np.save(tmp_path / "i.npy", np.ones((2, 2), np.int64))
    with pytest.raises(ShardError, match="float16 or float32"):
        read_npy(tmp_path / "i.npy")
    np.save(tmp_path / "x.npy", np.ones((2, 2), np.float32))
    with open(tmp_path / "x.npy", "ab") as f:
        f.write(b"junk")
    with pytest.raises(ShardError, match="unexpected bytes"):
        read_npy(tmp_path / "x.npy")


def test_zero_rows(tmp_path):
    np.save(tmp_path / "z.npy", np.ones((0, 8), np.float16))
    assert read_npy(tmp_path / "z.npy").open().shape == (0, 8)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_members(tmp_path, compressed):
    a = np.random.default_rng(1).standard_normal((6, 3)).astype(np.float16)
    (np.savez_compressed if compressed else np.savez)(tmp_path / "d.npz", b32_img=a, b32_txt=a * 2)
    info = read_npz_member(tmp_path / "d.npz", "b32_txt")
    assert info.shape == (6, 3) and info.mappable is (not compressed)
    np.testing.assert_array_equal(info.open(), a * 2)
    with pytest.raises(ShardError, match="no array 'l14_img'"):
        read_npz_member(tmp_path / "d.npz", "l14_img")


def test_npz_with_pickle_refused(tmp_path):
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(tmp_path / "e.npz", "w") as zf:
        with zf.open("b32_img.npy", "w") as f:
            np.lib.format.write_array(f, np.array([_Exploit(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ShardError, match="pickle"):
        read_npz_member(tmp_path / "e.npz", "b32_img")
    assert not marker.exists()


def test_pickle_payload_sanity(tmp_path):
    # the exploit really would run if unpickled: the refusal above is meaningful
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Exploit(marker)))
    assert marker.exists()
