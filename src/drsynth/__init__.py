"""drsynth: domain-randomized synthetic images for training image classifiers."""

__version__ = "0.1.0"
