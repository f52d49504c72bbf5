"""Video object segmentation: the DAVIS and YouTube-VOS layouts, J and F, the sequence runner."""
