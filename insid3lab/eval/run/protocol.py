"""The scoring protocols of :func:`~insid3lab.eval.run.runner.run_evaluation`, and what "paper" means per benchmark.

``"paper"`` (the command line's default) scores exactly as the authors' evaluation scripts of
``visinf/INSID3`` do; ``"native"`` scores each prediction at the target image's own size. The
two differ only in the size at which pixels are counted (S x S = ``image_size``² versus H x W),
so the per-episode counts, and with them mIoU and FB-IoU, differ slightly.

Every segmentation benchmark (coco, lvis, pascal_part, paco_part, isic, lung, suim, isaid,
permis, and folder / coco_json, which have no published counterpart):

* prediction at S x S: their ``build_insid3_from_args`` (``models/__init__.py``) builds the
  model with ``resize_to_orig_size=False``; the runner sets the same for the run.
* ground truth resized to S x S with nearest-neighbour ``F.interpolate`` on the float mask,
  then ``> 0.5``: ``inference_segmentation.py`` ``evaluate``. (The runner resizes the label
  map 0 / 1 / 255 with the same call; 255 pixels are not foreground, see ignore below.)
* intersection and union per episode for background (0) and foreground (1), with ``histc``
  over {0, 1}: ``utils/metrics.py`` ``Evaluator.classify_prediction``;
  :func:`~insid3lab.eval.metrics.segmentation.intersection_union` gives the same integer counts.
* per-class sums of both, indexed by the episode's class: ``AverageMeter.update``.
* IoU of a class = intersection / max(union, 1); mIoU = mean of the foreground IoU over the
  fold's class ids (a class no episode visited counts 0): ``AverageMeter.compute_iou``.
* FB-IoU = mean over background / foreground of (intersection summed over the fold's classes)
  / (union summed over them), without max(., 1): ``AverageMeter.compute_iou``.
* the fold's classes: ``build_class_ids`` of each ``datasets/<name>.py`` (COCO ``fold + 4 v``;
  LVIS every 10th validation category from ``fold``; PACO-Part every 4th from ``fold``, kept
  when present in the test split; iSAID ``5 fold + j``; Pascal-Part the parts of one
  super-category; ISIC 3, lung 1, SUIM 7, PerMIS 1 class).

Ignore handling:

* COCO-20i, LVIS-92i, PACO-Part, Pascal-Part, ISIC, lung, SUIM, PerMIS: none. The target mask is
  binarised when it is read (``tgt_mask[tgt_mask != class + 1] = 0`` in ``datasets/coco.py``
  ``load_frame``; ``>= 128`` in ``datasets/isic.py`` / ``lung.py`` / ``suim.py`` ``read_mask``; the
  union of instance / part polygons in ``lvis.py`` / ``paco_part.py`` / ``pascal_part.py``), so
  COCO's 255 boundary pixels are background. insid3lab's readers of these benchmarks produce no
  255 either (:mod:`insid3lab.eval.datasets`).
* iSAID-5i: pixels valued 255 in the label map are ignored: ``datasets/isaid.py``
  ``extract_ignore_idx`` returns them as ``tgt_ignore_idx``; ``classify_prediction`` sets
  prediction and ground truth to 255 there and ``histc`` over [0, 1] drops them from both
  intersection and union. Their ``tgt_ignore_idx`` is added to the S x S ground truth at the
  label map's own size (which only broadcasts when the two sizes agree); the runner resizes the
  ignore region with the ground truth (nearest-neighbour), the one reading under which both
  sizes agree.
* folder / coco_json: ``ignore_value`` (``--ignore-value``, default 255; ``--no-ignore``).

Episodes: the authors draw episodes from numpy's global generator seeded once (``np.random``
in ``datasets/*.py`` ``sample_episode`` / ``load_frame``; 1000 episodes for COCO-20i,
``len(img_metadata)`` targets for iSAID-5i, ...); insid3lab draws episode ``i`` from
``(seed, i)`` alone, so the episode sets differ but follow the same distribution. A set drawn
elsewhere reruns exactly with ``episodes=`` a JSON file.

SPair-71k (keypoints; ``inference_keypoint_matching.py`` with ``utils/metrics.py``
``PCKEvaluator(pck_by="image")``): a keypoint is correct when its Euclidean distance to the
ground truth is ``<= alpha * thres`` (``calculate_pck``), thres = max(w, h) of the target's
bounding box (``datasets/spair.py`` ``pck_thresh`` from ``trg_bndbox``), alpha in
0.05 / 0.10 / 0.15 / 0.20; PCK = the mean over pairs of each pair's fraction of correct
keypoints (``avg_by="all"``), in the target image's own pixel coordinates. Both protocols score
keypoints identically.
"""

from __future__ import annotations

__all__ = ["DEFAULT_PROTOCOL", "PROTOCOLS"]

PROTOCOLS = ("native", "paper")

# the command line's default: reproduces the published tables (run_evaluation keeps "native" for models
# that cannot give an S x S prediction)
DEFAULT_PROTOCOL = "paper"
