"""The model: preprocessing, calibrated probabilities, the architecture and its weights, the
analyzer (TensorFlow, imported lazily), heatmaps, overlays and the out-of-distribution gate."""
