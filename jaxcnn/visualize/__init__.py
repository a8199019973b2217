"""Plots of training runs, filters, feature maps, filter patterns, class heatmaps (Grad-CAM),
classic kernels, calibration, lecture 004's activation functions and optimizer paths, its
depth diagnostics (std per layer) and learning-rate range test.

Every ``plot_*`` function returns a matplotlib Figure drawn headless by Agg
(no pyplot, no display needed) and saves it as a PNG of ``figsize * dpi``
pixels when given ``path``. The data behind each plot has its own function
(``load_history``, ``conv_kernel``, ``feature_maps``, ``filter_patterns``,
``class_heatmap``;
``jaxcnn.metrics.calibration_bins`` for the reliability diagram).
"""

from jaxcnn.visualize.activations import feature_maps
from jaxcnn.visualize.activations import layer_outputs
from jaxcnn.visualize.activations import normalize_feature_map
from jaxcnn.visualize.activations import plot_feature_maps
from jaxcnn.visualize.activations import tile_feature_maps
from jaxcnn.visualize.classic import plot_classic_kernels
from jaxcnn.visualize.classic import plot_filtered
from jaxcnn.visualize.classic import plot_pattern_detection
from jaxcnn.visualize.classic import plot_smoothing
from jaxcnn.visualize.depth import plot_depth_statistics
from jaxcnn.visualize.filters import conv_kernel
from jaxcnn.visualize.filters import plot_filters
from jaxcnn.visualize.heatmaps import ClassHeatmap
from jaxcnn.visualize.heatmaps import class_heatmap
from jaxcnn.visualize.heatmaps import overlay
from jaxcnn.visualize.heatmaps import plot_class_heatmap
from jaxcnn.visualize.history import HISTORY_FILE
from jaxcnn.visualize.history import load_history
from jaxcnn.visualize.history import plot_histories
from jaxcnn.visualize.history import plot_history
from jaxcnn.visualize.history import smooth_curve
from jaxcnn.visualize.lectures import activation_curves
from jaxcnn.visualize.lectures import optimizer_path
from jaxcnn.visualize.lectures import optimizer_paths
from jaxcnn.visualize.lectures import plot_activations
from jaxcnn.visualize.lectures import plot_optimizer_paths
from jaxcnn.visualize.lr_find import plot_lr_find
from jaxcnn.visualize.patterns import FilterPatterns
from jaxcnn.visualize.patterns import deprocess_image
from jaxcnn.visualize.patterns import filter_patterns
from jaxcnn.visualize.patterns import generate_pattern
from jaxcnn.visualize.patterns import pattern_grid
from jaxcnn.visualize.patterns import plot_filter_patterns
from jaxcnn.visualize.uncertainty import plot_certainty_examples
from jaxcnn.visualize.uncertainty import plot_reliability_diagram
from jaxcnn.visualize.workdir import plot_workdir

__all__ = [
    "HISTORY_FILE",
    "ClassHeatmap",
    "FilterPatterns",
    "activation_curves",
    "class_heatmap",
    "conv_kernel",
    "deprocess_image",
    "feature_maps",
    "filter_patterns",
    "generate_pattern",
    "layer_outputs",
    "load_history",
    "normalize_feature_map",
    "optimizer_path",
    "optimizer_paths",
    "overlay",
    "pattern_grid",
    "plot_activations",
    "plot_certainty_examples",
    "plot_class_heatmap",
    "plot_classic_kernels",
    "plot_depth_statistics",
    "plot_feature_maps",
    "plot_filter_patterns",
    "plot_filtered",
    "plot_filters",
    "plot_histories",
    "plot_optimizer_paths",
    "plot_history",
    "plot_lr_find",
    "plot_pattern_detection",
    "plot_reliability_diagram",
    "plot_smoothing",
    "plot_workdir",
    "smooth_curve",
    "tile_feature_maps",
]
