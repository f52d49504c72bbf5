"""Scores: segmentation intersection and union, keypoint PCK, instance AP, bootstrap statistics."""
