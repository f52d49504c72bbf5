"""The method itself: the hyper-parameters, the trace, and :func:`decode`, the paper top to bottom.

- :mod:`~insid3lab.method.params`: :class:`Params`, the one home of every default and range;
- :mod:`~insid3lab.method.trace`: :class:`Trace` (every intermediate) and the :class:`Recorder`;
- :mod:`~insid3lab.method.pipeline`: :func:`decode` (localise, cluster, score, finalise) on encoded features;
- :mod:`~insid3lab.method.concepts`: :func:`decode_concepts` (many concepts, one clustering) and the instances.
"""

from insid3lab.method.params import Params
from insid3lab.method.pipeline import decode
from insid3lab.method.trace import NO_RECORD, ConceptsTrace, Recorder, Trace

__all__ = ["NO_RECORD", "ConceptsTrace", "Params", "Recorder", "Trace", "decode"]
