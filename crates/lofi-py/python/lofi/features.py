"""lofi feature folders as numpy arrays.

A feature folder is what ``lofi extract`` writes and ``lofi train-head`` / ``lofi detect``
read: one ``<id>.npy`` (``[L, C]`` float32) per video and an ``index.json`` saying how the
features were made (``snippets`` L, ``frames_per_snippet``, ``size``, ``encoder``) and which
videos they cover (file, duration, shape), plus the videos that failed. Reading and writing go
through the same Rust code as the extractor, so a folder written here is accepted by
``lofi train-head`` and the other way round. A folder without ``index.json`` (a peer's plain
``<id>.npy`` files, e.g. ActionFormer's) can be read too.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import _lofi

__all__ = ["FeatureFolder", "read_features", "write_features"]


class FeatureFolder(Mapping[str, np.ndarray]):
    """A feature folder opened for reading: a read-only mapping from video id to its
    ``[L, C]`` float32 array, loaded on access (an ActivityNet folder does not fit in memory
    at once).

    ``index`` is the parsed ``index.json`` (``None`` for a folder without one). Opening refuses
    a folder that a lofi process (an extraction, one of its shards, ``write_features``) is
    writing now, naming it. Loading goes through the reader ``lofi train-head`` uses: with an
    index, only the videos it lists, each from its own ``<id>.npy``, with the SHA-256 the index
    recorded, the index's shape and finite values; it raises ``ValueError`` naming the video and
    the file.
    """

    def __init__(self, path: "str | os.PathLike[str]") -> None:
        self.path = os.fspath(path)
        self._reader = _lofi.FeatureFolderReader(self.path)
        self.index: Optional[Dict[str, Any]] = self._reader.index()
        self._ids = self._reader.ids()
        self._known = set(self._ids)

    @property
    def snippets(self) -> Optional[int]:
        """``L``, the temporal length of every video (``None`` without an index)."""
        return None if self.index is None else self.index["snippets"]

    def duration(self, video: str) -> Optional[float]:
        """Seconds of video the features of ``video`` cover (``None`` without an index)."""
        if self.index is None:
            return None
        return self.index["videos"][video]["duration"]

    def __getitem__(self, video: str) -> np.ndarray:
        if video not in self._known:
            raise KeyError(video)
        rows, cols, data = self._reader.read(video)
        return np.frombuffer(data, dtype=np.float32).reshape(rows, cols)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, video: object) -> bool:
        return video in self._known

    def __repr__(self) -> str:
        return f"FeatureFolder({self.path!r}, {len(self)} videos, L={self.snippets})"


def read_features(path: "str | os.PathLike[str]") -> Dict[str, np.ndarray]:
    """Every video of a feature folder, as ``{id: [L, C] float32 array}``."""
    folder = FeatureFolder(path)
    return {video: folder[video] for video in folder}


def write_features(
    path: "str | os.PathLike[str]",
    features: Mapping[str, Any],
    durations: Mapping[str, float],
    *,
    frames_per_snippet: int,
    size: int,
    encoder: str,
    failed: Sequence[Tuple[str, str]] = (),
) -> None:
    """Writes a lofi feature folder: ``<id>.npy`` per video (float32, written to a temporary
    name and renamed) and ``index.json``.

    ``features`` maps video ids to ``[L, C]`` arrays (converted to float32), all with the same
    ``L``; ``durations`` gives the seconds each covers. ``frames_per_snippet``, ``size`` and
    ``encoder`` describe how they were made, ``failed`` lists ``(id, reason)`` of videos that
    could not be extracted. Nothing is written unless every video passes the checks (2-D,
    non-empty, one ``L``, finite values, an id usable as a file name, a duration for each).

    lofi never changes a file it did not write: ``path`` is a new folder, one this function
    wrote before (a rerun replaces what it wrote, and removes its ``.npy`` files of videos no
    longer given), or a folder of yours where no file of yours has a name written here. A folder
    of another lofi command (an extraction, a training run) is refused, as is a file of yours
    named ``<id>.npy`` or ``index.json``. The folder's lock is held while writing, so lofi's
    readers never see it half-written.
    """
    videos = []
    for video, array in features.items():
        video = str(video)
        array = np.asarray(array)
        if array.ndim != 2:
            raise ValueError(
                f"features of video {video!r}: expected a 2-D [L, C] array, got shape "
                f"{list(array.shape)}"
            )
        if video not in durations:
            raise ValueError(f"features of video {video!r}: no duration given in durations")
        data = np.ascontiguousarray(array, dtype=np.float32)
        videos.append(
            (video, float(durations[video]), data.shape[0], data.shape[1], data.tobytes())
        )
    _lofi.write_feature_folder(
        os.fspath(path), videos, int(frames_per_snippet), int(size), str(encoder),
        [(str(v), str(r)) for v, r in failed],
    )
