"""Tasks over one model: many concepts and instances, video tracking, keypoint matching; their output files.

Each task object holds an :class:`~insid3lab.INSID3` and calls its public parts, the way SAM 2's
video predictor sits over SAM's model:

- :mod:`~insid3lab.tasks.concepts`: :class:`ConceptSegmenter` (label maps, instances);
- :mod:`~insid3lab.tasks.tracking`: :class:`Tracker` (video, with a memory per object);
- :mod:`~insid3lab.tasks.matching`: :class:`KeypointMatcher` (keypoint correspondence);
- :mod:`~insid3lab.tasks.concept_files`: the files of a many-concept prediction;
- :mod:`~insid3lab.tasks.shortcuts`: the short forms (``model.segment_labels``, ``model.track``, ...),
  attached to :class:`INSID3` when this package is imported; ``INSID3`` here is that class.
"""

from insid3lab.model.insid3 import INSID3
from insid3lab.tasks import shortcuts as _shortcuts  # noqa: F401 - attaches the short forms to INSID3
from insid3lab.tasks.concepts import ConceptSegmenter
from insid3lab.tasks.matching import KeypointMatcher
from insid3lab.tasks.tracking import Tracker

__all__ = ["INSID3", "ConceptSegmenter", "KeypointMatcher", "Tracker"]
