"""``protocol="paper"`` against the authors' scoring loop, written out literally.

The loop below follows ``evaluate`` of their ``inference_segmentation.py`` with their
``Evaluator.classify_prediction`` and ``AverageMeter`` (``utils/metrics.py``), step by step:
ground truth resized to the S x S prediction with nearest-neighbour and ``> 0.5``, the ignore
region set to 255 in both, ``histc`` over [0, 1], per-class sums, IoU = I / max(U, 1), mIoU over
the fold's classes, FB-IoU from the summed counts. The only reading added is that the ignore
region is resized with the ground truth (theirs adds it at the label map's own size).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from insid3lab import INSID3
from insid3lab.eval import build_dataset, run_evaluation, sample_episodes


def classify_prediction(pred_mask, gt_mask, tgt_ignore_idx=None):
    """(2, 1) intersection and union as their ``Evaluator.classify_prediction``."""
    ignore_index = 255
    pred = pred_mask.float().unsqueeze(0)
    gt = (gt_mask > 0).float().unsqueeze(0)
    if tgt_ignore_idx is not None:
        tgt_ignore_idx = tgt_ignore_idx.clone().float()
        assert torch.logical_and(tgt_ignore_idx, gt).sum() == 0
        tgt_ignore_idx *= ignore_index
        gt = gt + tgt_ignore_idx
        pred[gt == ignore_index] = ignore_index
    area_inter, area_pred, area_gt = [], [], []
    for _pred, _gt in zip(pred, gt):
        _inter = _pred[_pred == _gt]
        if _inter.size(0) == 0:
            _area_inter = torch.tensor([0.0, 0.0])
        else:
            _area_inter = torch.histc(_inter, bins=2, min=0, max=1)
        area_inter.append(_area_inter)
        area_pred.append(torch.histc(_pred, bins=2, min=0, max=1))
        area_gt.append(torch.histc(_gt, bins=2, min=0, max=1))
    area_inter = torch.stack(area_inter).t()
    area_pred = torch.stack(area_pred).t()
    area_gt = torch.stack(area_gt).t()
    return area_inter, area_pred + area_gt - area_inter


class AverageMeter:
    """Their per-class sums and ``compute_iou`` (on the CPU, in float64)."""

    def __init__(self, class_ids):
        self.class_ids_interest = torch.tensor(class_ids)
        self.nclass = max(class_ids) + 1
        self.intersection_buf = torch.zeros(2, self.nclass, dtype=torch.float64)
        self.union_buf = torch.zeros(2, self.nclass, dtype=torch.float64)

    def update(self, inter_b, union_b, class_id):
        self.intersection_buf.index_add_(1, class_id, inter_b.double())
        self.union_buf.index_add_(1, class_id, union_b.double())

    def compute_iou(self):
        ones = torch.ones_like(self.union_buf)
        iou = self.intersection_buf / torch.max(torch.stack([self.union_buf, ones]), dim=0)[0]
        iou = iou.index_select(1, self.class_ids_interest)
        miou = iou[1].mean() * 100
        fb_iou = (
            self.intersection_buf.index_select(1, self.class_ids_interest).sum(dim=1)
            / self.union_buf.index_select(1, self.class_ids_interest).sum(dim=1)
        ).mean() * 100
        return miou.item(), fb_iou.item()


def authors_loop(model, dataset, episodes) -> tuple[float, float]:
    meter = AverageMeter(list(range(len(dataset.class_names))))
    model.resize_to_orig_size = False  # their build_insid3_from_args
    for ep in episodes:
        model.clear_reference()
        for r in ep.references:
            ref = dataset.load(r, ep.class_index)
            model.set_reference(ref.image, ref.foreground)
        tgt = dataset.load(ep.target, ep.class_index)
        pred_mask = torch.as_tensor(model.segment(tgt.image)).cpu()
        labels = torch.from_numpy(tgt.mask)
        tgt_mask = (labels == 1).float()  # their datasets binarise the mask at reading
        ignore = (labels == 255).float() if bool((labels == 255).any()) else None  # datasets/isaid.py
        tgt_mask = F.interpolate(tgt_mask.unsqueeze(0).unsqueeze(0).float(), size=pred_mask.shape,
                                 mode="nearest").squeeze(0).squeeze(0) > 0.5  # fmt: skip
        if ignore is not None:
            ignore = F.interpolate(ignore[None, None], size=pred_mask.shape, mode="nearest")[0, 0]
        area_inter, area_union = classify_prediction(pred_mask, tgt_mask, tgt_ignore_idx=ignore)
        meter.update(area_inter, area_union, torch.tensor([ep.class_index]))
    model.resize_to_orig_size = True
    return meter.compute_iou()


@pytest.mark.parametrize(("name", "shots"), [("isaid", 1), ("isaid", 2), ("coco", 1), ("coco", 2)])
def test_paper_protocol_equals_the_authors_loop(eval_data, tmp_path, tiny_backbone, name, shots):
    model = INSID3(tiny_backbone, image_size=64, svd_components=8, basis_cache=False, progress=False)
    dataset = build_dataset(name, eval_data, shots=shots)
    episodes = sample_episodes(dataset, 6, seed=1)
    miou, fb_iou = authors_loop(model, dataset, episodes)
    s = run_evaluation(model, dataset, tmp_path / "run", episodes=episodes, protocol="paper", progress=False,
                       bootstrap=0)  # fmt: skip
    assert s["miou"] == pytest.approx(miou, abs=1e-9) and s["fb_iou"] == pytest.approx(fb_iou, abs=1e-9)
    assert model.resize_to_orig_size is True  # restored after the run
    # every episode counted S x S pixels (less the ignored ones)
    n = sum(u[0] + i[1] for i, u in zip(zip(*s["intersection"]), zip(*s["union"])))
    assert 0 < n <= 6 * 64 * 64
    # and the native protocol, on images of other sizes than S x S, gives other counts
    native = run_evaluation(model, dataset, tmp_path / "native", episodes=episodes, protocol="native",
                            progress=False, bootstrap=0)  # fmt: skip
    assert native["union"] != s["union"]
