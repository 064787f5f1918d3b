"""Type stubs of the extension module ``lofi._lofi`` (the Rust side; use the ``lofi`` package)."""

from typing import Any, Dict, List, Optional, Tuple, Union

__version__: str
THUMOS14_DISPUTED_TEST_VIDEOS: List[str]
THUMOS14_AMBIGUOUS_LABEL: str

# A path, a dict in the ActivityNet layout, or
# ("columns", name, video_ids, t_start_f64_bytes, t_end_f64_bytes, labels | None, scores_f64_bytes | None).
_Source = Union[str, Dict[str, Any], Tuple[Any, ...]]

def evaluate_detection(
    ground_truth: _Source,
    predictions: _Source,
    subset: str,
    tiou_thresholds: List[float],
    exclude_videos: List[str],
    exclude_labels: List[str],
) -> Tuple[Dict[str, Any], Dict[str, Any]]: ...
def analyze_detection(
    ground_truth: _Source,
    predictions: _Source,
    subset: str,
    dataset: str,
    tiou_thresholds: Optional[List[float]],
    exclude_videos: List[str],
    exclude_labels: List[str],
) -> Tuple[str, Dict[str, Any]]: ...
def evaluate_proposals(
    ground_truth: _Source,
    proposals: _Source,
    subset: str,
    tiou_thresholds: List[float],
    max_avg_proposals: Optional[float],
    exclude_videos: List[str],
    exclude_labels: List[str],
) -> Tuple[Dict[str, Any], Dict[str, Any]]: ...
def tables(
    ground_truth: _Source,
    predictions: _Source,
    subset: str,
    kind: str,
    exclude_videos: List[str],
    exclude_labels: List[str],
) -> Tuple[Dict[str, list], Dict[str, list], List[str]]: ...
def parse_thresholds(text: str) -> List[float]: ...
def nms(segments: bytes, scores: bytes, iou_threshold: float, top_k: int) -> List[int]: ...
def soft_nms(
    segments: bytes,
    scores: bytes,
    method: str,
    sigma: float,
    iou_threshold: float,
    top_k: int,
    min_score: float,
) -> Tuple[List[int], List[float]]: ...
def fuse_classes(
    scores: bytes, class_scores: bytes, top_k: int
) -> Tuple[List[int], List[int], List[float]]: ...

class FeatureFolderReader:
    def __init__(self, path: str) -> None: ...
    def index(self) -> Optional[Dict[str, Any]]: ...
    def ids(self) -> List[str]: ...
    def read(self, id: str) -> Tuple[int, int, bytearray]: ...

def write_feature_folder(
    path: str,
    videos: List[Tuple[str, float, int, int, bytes]],
    frames_per_snippet: int,
    size: int,
    encoder: str,
    failed: List[Tuple[str, str]],
) -> None: ...
