"""Synthetic scenes with exact masks: images, video sequences and the sample files of ``insid3lab samples``.

They let the tests, the notebooks and the benchmarks run every mechanism without a dataset.
"""

from insid3lab.synthetic.scenes import (
    SCENES,
    box_scene,
    cat_pair,
    defect_scene,
    draw_object,
    grid_scene,
    lesion_scene,
    object_scene,
    sample_scene,
    textured_background,
    write_folder_dataset,
    write_samples,
)
from insid3lab.synthetic.video import (
    moving_object_sequence,
    write_davis_sequence,
    write_moving_sequences,
    write_youtube_vos_sequence,
)

__all__ = [
    "SCENES",
    "box_scene",
    "cat_pair",
    "defect_scene",
    "draw_object",
    "grid_scene",
    "lesion_scene",
    "moving_object_sequence",
    "object_scene",
    "sample_scene",
    "textured_background",
    "write_davis_sequence",
    "write_folder_dataset",
    "write_moving_sequences",
    "write_samples",
    "write_youtube_vos_sequence",
]
