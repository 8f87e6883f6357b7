from pathlib import Path

import pytest

from models.checkpoint import MANIFEST_FILE, Manifest, atomic_folder, read_manifest
from models.errors import CheckpointError
from models.taxonomy import load_taxonomy


def _manifest() -> Manifest:
    taxonomy = load_taxonomy()
    n = len(taxonomy.names)
    return Manifest("encoder", "v1", "tiny", taxonomy.to_dict(), [0.5] * n, [1.0] * n, 128)


def test_atomic_folder_replaces_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    with atomic_folder(out) as tmp:
        _manifest().write(tmp)
    assert read_manifest(out).version == "v1"
    with pytest.raises(RuntimeError), atomic_folder(out) as tmp:
        (tmp / "partial.bin").write_text("half")
        raise RuntimeError("crash mid-write")
    assert read_manifest(out).version == "v1"
    assert not (out / "partial.bin").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary folders left behind


def test_read_manifest_explains_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist; build the default"):
        read_manifest(tmp_path / "missing")
    (tmp_path / "weights.bin").write_text("")
    with pytest.raises(CheckpointError, match=f"no {MANIFEST_FILE} \\(found weights.bin\\)"):
        read_manifest(tmp_path)
    _manifest().write(tmp_path)
    with pytest.raises(CheckpointError, match="holds a 'encoder' checkpoint, expected 'adapter'"):
        read_manifest(tmp_path, kind="adapter")
