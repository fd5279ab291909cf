"""Pure, vectorised drift detection core: no I/O."""

# --- concept drift, performance, label-free estimation, importance drift --------------------
from driftline.detectors.concept import BINARY_KINDS as BINARY_KINDS
from driftline.detectors.concept import DETECTOR_KINDS as DETECTOR_KINDS
from driftline.detectors.concept import CheckpointVersionError as CheckpointVersionError
from driftline.detectors.concept import ConceptDriftMonitor as ConceptDriftMonitor
from driftline.detectors.concept import ConceptDriftSuite as ConceptDriftSuite
from driftline.detectors.concept import DriftRecord as DriftRecord
from driftline.detectors.concept import DriftState as DriftState
from driftline.detectors.concept import SuiteMember as SuiteMember
from driftline.detectors.estimation import CBPE as CBPE
from driftline.detectors.estimation import CBPEEstimate as CBPEEstimate
from driftline.detectors.estimation import ExpectedConfusion as ExpectedConfusion
from driftline.detectors.estimation import IsotonicCalibrator as IsotonicCalibrator
from driftline.detectors.estimation import MetricBand as MetricBand
from driftline.detectors.estimation import expected_confusion as expected_confusion
from driftline.detectors.estimation import (
    expected_confusion_from_histogram as expected_confusion_from_histogram,
)
from driftline.detectors.importance import AttributionSums as AttributionSums
from driftline.detectors.importance import FeatureRankChange as FeatureRankChange
from driftline.detectors.importance import ImportanceShift as ImportanceShift
from driftline.detectors.importance import compare_importance as compare_importance
from driftline.detectors.importance import mutual_information as mutual_information
from driftline.detectors.importance import (
    mutual_information_importance as mutual_information_importance,
)
from driftline.detectors.performance import ConfusionCounts as ConfusionCounts
from driftline.detectors.performance import PerformanceTrend as PerformanceTrend
from driftline.detectors.performance import RegressionSums as RegressionSums
from driftline.detectors.performance import binary_metrics as binary_metrics
from driftline.detectors.performance import classification_metrics as classification_metrics
from driftline.detectors.performance import log_loss as log_loss
from driftline.detectors.performance import multiclass_metrics as multiclass_metrics
from driftline.detectors.performance import performance_trend as performance_trend
from driftline.detectors.performance import regression_metrics as regression_metrics
from driftline.detectors.performance import relative_drop as relative_drop
from driftline.detectors.performance import roc_auc as roc_auc
from driftline.detectors.performance import roc_auc_from_histograms as roc_auc_from_histograms

# --- end concept/performance/estimation/importance ------------------------------------------

# --- statistical tests and multiple-testing correction (stats/, multiple_testing.py) --------
# isort: split
from driftline.detectors.multiple_testing import adjust_p_values as adjust_p_values
from driftline.detectors.stats import PCAReconstruction as PCAReconstruction
from driftline.detectors.stats import TestResult as TestResult
from driftline.detectors.stats import chi_square as chi_square
from driftline.detectors.stats import hellinger as hellinger
from driftline.detectors.stats import jensen_shannon as jensen_shannon
from driftline.detectors.stats import ks_binned as ks_binned
from driftline.detectors.stats import ks_exact as ks_exact
from driftline.detectors.stats import mmd as mmd
from driftline.detectors.stats import psi as psi
from driftline.detectors.stats import wasserstein as wasserstein

# --- end statistical tests --------------------------------------------------------------------

# --- batches, profiles, sketches, thresholds, window evaluation ------------------------------
# isort: split
from driftline.detectors.batch import RecordBatch as RecordBatch
from driftline.detectors.evaluate import FeatureEvaluation as FeatureEvaluation
from driftline.detectors.evaluate import MultivariateEvaluation as MultivariateEvaluation
from driftline.detectors.evaluate import WindowEvaluation as WindowEvaluation
from driftline.detectors.evaluate import WindowSummary as WindowSummary
from driftline.detectors.evaluate import evaluate_window as evaluate_window
from driftline.detectors.evaluate import window_summary as window_summary
from driftline.detectors.profile import ProfileFormatError as ProfileFormatError
from driftline.detectors.profile import ReferenceProfile as ReferenceProfile
from driftline.detectors.sketch import LatencySketch as LatencySketch
from driftline.detectors.sketch import SketchMismatchError as SketchMismatchError
from driftline.detectors.sketch import WindowSketch as WindowSketch
from driftline.detectors.thresholds import DriftThresholds as DriftThresholds
from driftline.detectors.thresholds import FeatureThresholds as FeatureThresholds
from driftline.detectors.thresholds import ModelThresholds as ModelThresholds
from driftline.detectors.thresholds import ThresholdsError as ThresholdsError
from driftline.detectors.thresholds import load_thresholds as load_thresholds
from driftline.detectors.thresholds import thresholds_from_dict as thresholds_from_dict
# --- end batches/profiles/sketches/thresholds/evaluation --------------------------------------
