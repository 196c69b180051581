"""One atomic output (issue 23): vt-merge's JSONL and HDF5 outputs go through core.files, whose
temporary file is registered, so the frame removes it on any signal."""

from __future__ import annotations

import pytest

from vtcav_common.core import files
from vtcav_common.scale import shard as sharding
from vtcav_common.scale.merge import hdf5


def test_atomic_open_registers_its_temporary_file_and_renames_it(tmp_path):
    target = tmp_path / "merged.jsonl"
    with files.atomic_open(target, "w") as handle:
        handle.write("{}\n")
        temps = files.live_temps()
        assert len(temps) == 1 and temps[0].parent == tmp_path and temps[0].exists()   # SIGTERM would remove it
        assert not target.exists()
    assert target.read_text() == "{}\n"
    assert files.live_temps() == [] and list(tmp_path.iterdir()) == [target]


def test_an_interrupted_atomic_open_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "merged.jsonl"
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_open(target, "wb") as handle:
            handle.write(b"half")
            raise KeyboardInterrupt
    assert target.read_text() == "old\n" and list(tmp_path.iterdir()) == [target] and files.live_temps() == []


def test_vt_merge_has_no_writer_of_its_own():
    assert sharding.atomic_output is files.atomic_open
    assert not hasattr(hdf5, "_atomic_h5") and hdf5.atomic_path is files.atomic_path


def test_one_file_hash(tmp_path):
    from vtcav_common.models import base

    path = tmp_path / "w.bin"
    path.write_bytes(b"abc")
    assert files.file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert base.file_sha256 is files.file_sha256
