"""Tasks over one model: many concepts and instances, video tracking, keypoint matching; their output files.

Each task object holds an :class:`~insid3lab.INSID3` and calls its public methods, the way SAM 2's
video predictor sits over SAM's model.
"""
