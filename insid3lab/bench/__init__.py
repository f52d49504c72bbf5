"""Speed and memory of INSID3, stage by stage, against re-encoding the reference for every target.

``insid3lab bench`` (and ``benchmarks/bench_insid3.py``) measures, in one run:

- the cost of getting ready: loading the weights, the positional basis, encoding the
  reference shots;
- every target segmented against the cached reference, with the time of each stage
  (``preprocess``, ``features`` = the backbone, then the decode stages ``references``,
  ``debias``, ``forward``, ``backward``, ``clustering``, ``aggregation``, ``upsampling``),
  and each decode stage as a fraction of the target's encoding time;
- the same targets segmented by the *baseline*: the authors' procedure, which passes the
  reference shots and the target through the backbone together for every target, builds
  the prototype again, clusters with scikit-learn on the CPU and computes per-cluster
  statistics one cluster at a time. Its masks are compared with the pipeline's;
- images per second with batched backbone passes (:meth:`INSID3.segment_many`);
- peak memory: CUDA's maximum allocated bytes around one target, or on the CPU the peak
  resident set size of a fresh process that segments one target;
- cold start: a new Python process from its start to its first mask, with an empty and
  with a warm positional-basis cache, and the same for the baseline, split into imports,
  weights, basis, reference shots and the first target;
- in the fast mode (``--autocast bfloat16`` or ``float16``: the backbone under autocast, the
  decode in float32), the IoU of its masks with the float32 masks of the same inputs.

Inputs are synthetic scenes drawn from a seed (or images given with ``--ref``/``--target``),
so random weights (``--model random:vitl16``) measure the real amount of work without a
download; their masks mean nothing, but they must still agree between the paths.

Modules: :mod:`~insid3lab.bench.inputs` (the inputs), :mod:`~insid3lab.bench.running`
(:func:`run_benchmark`), :mod:`insid3lab.authors` (the authors' procedure),
:mod:`~insid3lab.bench.coldstart` (fresh processes), :mod:`~insid3lab.bench.timing` (clocks),
:mod:`~insid3lab.bench.report` (:func:`format_summary`).
"""

from insid3lab.authors import baseline_basis, baseline_segment
from insid3lab.bench.coldstart import cold_start_child
from insid3lab.bench.inputs import synthetic_inputs
from insid3lab.bench.report import format_summary
from insid3lab.bench.running import BASELINE_STAGES, PIPELINE_STAGES, mask_iou, run_benchmark

__all__ = [
    "BASELINE_STAGES",
    "PIPELINE_STAGES",
    "baseline_basis",
    "baseline_segment",
    "cold_start_child",
    "format_summary",
    "mask_iou",
    "run_benchmark",
    "synthetic_inputs",
]
