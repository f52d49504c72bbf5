"""Sample scenes for figures: the generators of :mod:`insid3lab.scenes`, under the names ``viz`` exports."""

from ..scenes import SCENES, cat_pair, defect_scene, lesion_scene, write_folder_dataset

__all__ = ["SCENES", "cat_pair", "defect_scene", "lesion_scene", "write_folder_dataset"]
