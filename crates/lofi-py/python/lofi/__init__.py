"""lofi for Python: the exact ActivityNet / THUMOS14 evaluator, post-processing on numpy arrays
and lofi feature folders.

- :func:`evaluate_detection`, :func:`evaluate_proposals`: the numbers of ``lofi eval --json``
  from paths, dicts in the ActivityNet layout or pandas DataFrames;
- :func:`analyze_detection`: DETAD's error analysis, as ``lofi eval detection --analysis``;
- :class:`ANETdetection`, :class:`ANETproposal`: drop-in replacements for the official classes;
- :func:`nms`, :func:`soft_nms`, :func:`fuse_classes`: per-video post-processing;
- :class:`FeatureFolder`, :func:`read_features`, :func:`write_features`: feature folders.
"""

from ._evaluation import (
    THUMOS14_AMBIGUOUS_LABEL,
    THUMOS14_DISPUTED_TEST_VIDEOS,
    EvaluationWarning,
    analyze_detection,
    evaluate_detection,
    evaluate_proposals,
)
from ._lofi import __version__
from .anet import ANETdetection, ANETproposal
from .features import FeatureFolder, read_features, write_features
from .postprocess import fuse_classes, nms, soft_nms

__all__ = [
    "ANETdetection",
    "ANETproposal",
    "EvaluationWarning",
    "FeatureFolder",
    "THUMOS14_AMBIGUOUS_LABEL",
    "THUMOS14_DISPUTED_TEST_VIDEOS",
    "__version__",
    "analyze_detection",
    "evaluate_detection",
    "evaluate_proposals",
    "fuse_classes",
    "nms",
    "read_features",
    "soft_nms",
    "write_features",
]
