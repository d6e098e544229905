"""The sealed folder (pipelines/sealing.py) that the feature cache, checkpoints, the model cache and
run folders share: every kind of damage is named, and the manifest is the last thing written."""

import json
import os

import pytest

from pipelines import sealing

MANIFEST = "manifest.json"


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "sealed"
    (root / "sub").mkdir(parents=True)
    (root / "weights.bin").write_bytes(bytes(range(256)) * 8)
    (root / "config.json").write_text('{"a": 1}')
    (root / "sub" / "part.arrow").write_bytes(b"arrow" * 10)
    sealing.write(root, MANIFEST, {"run_id": "r1", "kind": "test"})
    return root


def test_a_sealed_folder_lists_every_file_and_the_callers_fields(folder):
    record = json.loads((folder / MANIFEST).read_text())
    assert list(record) == ["run_id", "kind", "files"]
    assert sorted(record["files"]) == ["config.json", "sub/part.arrow", "weights.bin"]
    assert record["files"]["weights.bin"]["bytes"] == 2048 and len(record["files"]["weights.bin"]["sha256"]) == 64
    assert sealing.check(folder, MANIFEST) is None and sealing.check(folder, MANIFEST, exact=True) is None
    assert not (folder / f"{MANIFEST}.tmp").exists()
    before = (folder / MANIFEST).read_bytes()
    sealing.write(folder, MANIFEST, {"run_id": "r1", "kind": "test"})
    assert (folder / MANIFEST).read_bytes() == before  # no timestamps: the same files give the same bytes


def test_files_are_made_readable_like_any_new_file(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"x")
    os.chmod(tmp_path / "w.safetensors", 0o600)  # how safetensors writes
    sealing.write(tmp_path, MANIFEST)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, kind, name, words", [
    ("tampered", "content", "weights.bin", "weights.bin was changed after it was written (it does not match its "
                                           "sha256 in manifest.json)"),
    ("cut", "size", "weights.bin", "weights.bin is cut or changed (1024 bytes, 2048 written)"),
    ("missing", "missing", "sub/part.arrow", "sub/part.arrow is missing"),
    ("no manifest", "no manifest", MANIFEST, "no manifest.json: writing it was cut short, or an older cardtune "
                                             "wrote it"),
    ("garbage manifest", "unreadable manifest", MANIFEST, "manifest.json is unreadable"),
    ("manifest lists a path outside", "unreadable manifest", MANIFEST, "manifest.json is unreadable"),
    ("manifest without sizes", "unreadable manifest", MANIFEST, "manifest.json is unreadable"),
])
def test_each_kind_of_damage_is_named(folder, damage, kind, name, words):
    manifest = folder / MANIFEST
    if damage == "tampered":
        _flip(folder / "weights.bin")
    elif damage == "cut":
        os.truncate(folder / "weights.bin", 1024)
    elif damage == "missing":
        (folder / "sub" / "part.arrow").unlink()
    elif damage == "no manifest":
        manifest.unlink()
    elif damage == "garbage manifest":
        manifest.write_text('{"files": {"weights.bin": ')
    elif damage == "manifest lists a path outside":
        record = json.loads(manifest.read_text())
        record["files"]["../outside"] = record["files"]["config.json"]
        manifest.write_text(json.dumps(record))
    else:
        manifest.write_text(json.dumps({"files": {"config.json": {"sha256": "0" * 64}}}))
    flaw = sealing.check(folder, MANIFEST)
    assert (flaw.kind, flaw.name, str(flaw)) == (kind, name, words)
    if kind.endswith("manifest"):
        with pytest.raises(sealing.Unsealed) as err:
            sealing.read(folder, MANIFEST)
        assert err.value.flaw == flaw


def test_an_extra_file_is_a_flaw_only_for_an_exact_check(folder):
    (folder / "sub" / "stray.bin").write_bytes(b"x")
    assert sealing.check(folder, MANIFEST) is None  # a library may add its own files beside the listed ones
    flaw = sealing.check(folder, MANIFEST, exact=True)
    assert (flaw.kind, str(flaw)) == ("extra", "sub/stray.bin is not listed in manifest.json")


def test_skipped_files_and_a_check_without_hashes(folder):
    _flip(folder / "config.json")
    assert sealing.check(folder, MANIFEST, skip={"config.json"}) is None
    assert sealing.check(folder, MANIFEST, hashes=False) is None  # same size: only the hashes tell
    assert sealing.check(folder, MANIFEST).name == "config.json"
    record = sealing.read(folder, MANIFEST)
    assert sealing.check(folder, MANIFEST, record).kind == "content"


def test_a_record_in_the_layout_of_earlier_checkpoints_still_reads(tmp_path):
    # cardtune_checkpoint.json before the sealed folder was shared: indent 1, files between other fields
    (tmp_path / "optimizer.pt").write_bytes(b"state")
    sealing.write(tmp_path, "cardtune_checkpoint.json")
    files = sealing.read(tmp_path, "cardtune_checkpoint.json")["files"]
    (tmp_path / "cardtune_checkpoint.json").write_text(
        json.dumps({"fingerprint": {"card": "c"}, "files": files, "session": None}, indent=1))
    assert sealing.read(tmp_path, "cardtune_checkpoint.json")["fingerprint"] == {"card": "c"}
    assert sealing.check(tmp_path, "cardtune_checkpoint.json") is None
