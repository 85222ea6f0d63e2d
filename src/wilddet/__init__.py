"""wilddet: large-scale long-tailed multi-label object detection."""
__version__ = "0.1.0"
