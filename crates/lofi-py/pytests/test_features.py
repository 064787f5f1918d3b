"""Feature folders: written and read back through the extractor's own codec and index schema."""

import json

import numpy as np
import pytest

import lofi


def test_round_trip_and_the_index(tmp_path):
    rng = np.random.default_rng(0)
    features = {"v_a": rng.standard_normal((8, 5)), "b": rng.standard_normal((8, 3))}
    lofi.write_features(tmp_path, features, {"v_a": 12.5, "b": 3.0}, frames_per_snippet=8,
                        size=112, encoder="runs/lofi/encoder.bpk", failed=[("c", "no video")])
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["snippets"] == 8 and index["encoder"] == "runs/lofi/encoder.bpk"
    entry = index["videos"]["v_a"]
    assert entry["sha256"].startswith("sha256:") and len(entry["sha256"]) == 7 + 64
    del entry["sha256"]
    assert entry == {"file": "v_a.npy", "duration": 12.5, "shape": [8, 5]}
    assert index["failed"] == [{"id": "c", "reason": "no video"}]
    # Plain numpy reads the files: version 1.0, little-endian float32, C order.
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), features["b"].astype(np.float32))
    folder = lofi.FeatureFolder(tmp_path)
    assert sorted(folder) == ["b", "v_a"] and len(folder) == 2 and "b" in folder
    assert folder.snippets == 8 and folder.duration("v_a") == 12.5
    assert folder.index["videos"]["b"]["shape"] == (8, 3)
    for video, array in features.items():
        loaded = folder[video]
        assert loaded.dtype == np.float32 and loaded.shape == array.shape
        np.testing.assert_array_equal(loaded, array.astype(np.float32))
    assert set(lofi.read_features(tmp_path)) == {"v_a", "b"}
    with pytest.raises(KeyError):
        folder["zzz"]


def test_folders_without_an_index_are_read_as_peers_publish_them(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((4, 2), dtype=np.float64))
    np.save(tmp_path / "y.npy", np.zeros((6, 2), dtype=np.float16))
    folder = lofi.FeatureFolder(tmp_path)
    assert folder.index is None and folder.snippets is None and list(folder) == ["x", "y"]
    assert folder["x"].dtype == np.float32 and folder["y"].shape == (6, 2)


def test_reading_checks_what_train_head_checks(tmp_path):
    lofi.write_features(tmp_path, {"a": np.ones((4, 3))}, {"a": 1.0}, frames_per_snippet=1,
                        size=1, encoder="x")
    np.save(tmp_path / "a.npy", np.ones((4, 2), dtype=np.float32))
    # The bytes the index recorded are checked first ...
    with pytest.raises(ValueError, match=r"features of video \"a\" \(.*a\.npy\): its bytes "
                                         r"differ from what the index recorded"):
        lofi.FeatureFolder(tmp_path)["a"]
    # ... then, for an index without hashes (written by hand), shape and values.
    index = json.loads((tmp_path / "index.json").read_text())
    del index["videos"]["a"]["sha256"]
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"features of video \"a\" \(.*a\.npy\): shape \[4, 2\] "
                                         r"differs from the index's \[4, 3\]"):
        lofi.FeatureFolder(tmp_path)["a"]
    bad = np.ones((4, 3), dtype=np.float32)
    bad[2, 1] = np.inf
    np.save(tmp_path / "a.npy", bad)
    with pytest.raises(ValueError, match="value at time step 2, channel 1 is inf"):
        lofi.FeatureFolder(tmp_path)["a"]
    np.save(tmp_path / "a.npy", np.ones((4, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="dtype <i8 is not supported"):
        lofi.FeatureFolder(tmp_path)["a"]
    (tmp_path / "index.json").write_text('{"snippets": 4}')
    with pytest.raises(ValueError, match="index.json: missing field"):
        lofi.FeatureFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="feature folder does not exist"):
        lofi.FeatureFolder(tmp_path / "nope")


def test_writing_refuses_what_reading_would_refuse(tmp_path):
    target = tmp_path / "out"
    cases = [
        ({"a": np.ones((4, 3)), "b": np.ones((5, 3))}, "one temporal length L"),
        ({"a": np.full((4, 3), np.nan)}, r"is NaN \(not finite\)"),
        ({"../a": np.ones((4, 3))}, "path separator"),
        ({"a": np.ones(4)}, "expected a 2-D"),
        ({"a": np.ones((0, 3))}, "empty array"),
        ({}, "no videos"),
    ]
    for features, expected in cases:
        durations = {k: 1.0 for k in features}
        with pytest.raises(ValueError, match=expected):
            lofi.write_features(target, features, durations, frames_per_snippet=1, size=1,
                                encoder="x")
        assert not target.exists()
    with pytest.raises(ValueError, match="no duration given"):
        lofi.write_features(target, {"a": np.ones((4, 3))}, {}, frames_per_snippet=1, size=1,
                            encoder="x")


def test_a_folder_being_written_is_not_read(tmp_path):
    import fcntl

    lofi.write_features(tmp_path, {"a": np.ones((4, 3))}, {"a": 1.0}, frames_per_snippet=1,
                        size=1, encoder="x")
    # What a running `lofi extract` holds: the folder's lock, with its holder line.
    with open(tmp_path / ".lofi-lock", "r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("pid 4242 on host, started 1 (unix time): lofi extract --out x")
        lock.flush()
        with pytest.raises(ValueError, match=r"being written by a lofi process \(pid 4242 .*"
                                             r"lofi extract"):
            lofi.FeatureFolder(tmp_path)
        with pytest.raises(ValueError, match="in use by another lofi process"):
            lofi.write_features(tmp_path, {"a": np.ones((4, 3))}, {"a": 1.0},
                                frames_per_snippet=1, size=1, encoder="x")
        lock.truncate(0)
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert list(lofi.FeatureFolder(tmp_path)) == ["a"]


def test_writing_never_touches_what_lofi_did_not_write(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "a.npy").write_text("a user's file")
    (user / "notes.txt").write_text("notes")
    with pytest.raises(ValueError, match="lofi did not write a.npy"):
        lofi.write_features(user, {"a": np.ones((4, 3))}, {"a": 1.0}, frames_per_snippet=1,
                            size=1, encoder="x")
    assert (user / "a.npy").read_text() == "a user's file"
    # Beside the user's notes, and again (a rerun replaces what it wrote).
    for _ in range(2):
        lofi.write_features(user, {"b": np.ones((4, 3))}, {"b": 1.0}, frames_per_snippet=1,
                            size=1, encoder="x")
    assert (user / "notes.txt").read_text() == "notes" and list(lofi.FeatureFolder(user)) == ["b"]
    # A folder an extraction owns.
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    (extracted / ".lofi-owned.jsonl").write_text(
        '{"folder": {"kind": "features", "lofi": "0.1.0", "created": true}}\n')
    with pytest.raises(ValueError, match=r"is a feature folder \(lofi extract\); write_features"):
        lofi.write_features(extracted, {"a": np.ones((4, 3))}, {"a": 1.0},
                            frames_per_snippet=1, size=1, encoder="x")
    assert sorted(p.name for p in extracted.iterdir()) == [".lofi-lock", ".lofi-owned.jsonl"]
