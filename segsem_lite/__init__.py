"""segsem_lite: SegSEM contour extraction from SEM images for OPC calibration.

The classical path (Sauvola fallback, gate, refinement, contours, metrics, dataset,
generator) imports without torch; the SAM2 engine lives in :mod:`segsem_lite.sam`.
"""

from .batch import EvaluationReport, evaluate_dataset, extract_dataset, format_table, table_one
from .config import EdgeConfig, FallbackConfig, GateConfig, PipelineConfig, RefineConfig
from .contours import extract_contours, sobel_edges, write_contours_csv, write_contours_gds, write_contours_json
from .dataset import (Dataset, DatasetReport, Design, Target, check_dataset, read_image, read_mask, real_samples,
                      sample_dataset)
from .discover import Discovery, Feature, discover_features
from .edges import place_edges
from .errors import SegSEMError
from .gate import GateDecision, gate_candidates
from .instrument import SEMFile, find_data_bar, read_sem
from .metrics import EdgePlacementError, MaskScores, average_exposure, edge_placement_error, iou, mask_scores
from .metrology import FeatureMetrics, FieldMetrics, Roughness, measure_feature, measure_field, roughness
from .morphology import refine_mask
from .pipeline import MaskSource, SegmentationResult, segment_image, segment_target
from .registry import load_model
from .threshold import fallback_mask, sauvola_mask

__version__ = "0.1.0"

__all__ = [
    "Dataset", "DatasetReport", "Design", "EdgeConfig", "EdgePlacementError", "EvaluationReport", "FallbackConfig",
    "GateConfig", "GateDecision", "MaskScores", "MaskSource", "PipelineConfig", "RefineConfig",
    "SegSEMError", "SegmentationResult", "Target", "average_exposure", "check_dataset", "edge_placement_error",
    "evaluate_dataset", "extract_contours", "extract_dataset", "fallback_mask", "format_table", "gate_candidates",
    "iou", "load_model", "mask_scores", "place_edges", "read_image", "read_mask", "refine_mask", "sample_dataset",
    "sauvola_mask", "segment_image", "segment_target", "sobel_edges", "table_one", "write_contours_csv", "write_contours_gds",
    "write_contours_json", "SEMFile", "read_sem", "find_data_bar", "Discovery", "Feature", "discover_features",
    "FeatureMetrics", "FieldMetrics", "Roughness", "measure_feature", "measure_field", "roughness", "real_samples",
]
