"""A literal, loop-based transcription of the method's description, used as the second path.

It shares no code with insid3lab's stages: every step is written the obvious way
(loops over shots, clusters and cells where the description speaks of them,
scikit-learn for the clustering), so that equality with the pipeline is evidence.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.cluster import AgglomerativeClustering

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def load(img: Image.Image, S: int) -> torch.Tensor:
    img = img.convert("RGB").resize((S, S), Image.BILINEAR)
    t = torch.from_numpy(np.array(img, np.uint8)).permute(2, 0, 1).float().div(255)
    return ((t - MEAN) / STD).unsqueeze(0)


def load_mask(mask: np.ndarray, S: int) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(mask) > 0)[None, None].float()
    return F.interpolate(t, size=(S, S), mode="nearest")[0, 0] > 0.5


def low_res(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    m = mask[None, None].float()
    d = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)[0, 0] > 0.5
    if d.sum() == 0:
        d = F.interpolate(m, size=(h, w), mode="nearest")[0, 0] > 0.5
        if d.sum() == 0:
            c = torch.argwhere(mask > 0).float().mean(0)
            cy, cx = (c / (mask.shape[-1] // w)).int()
            d[cy, cx] = True
    return d


def feats(encoder, x):
    return F.normalize(encoder.get_intermediate_layers(x, n=1, reshape=True)[0].float(), dim=1)[0]


def segment(encoder, refs, target: Image.Image, S: int, r: int, tau: float, thr: float) -> torch.Tensor:
    """refs: list of (PIL image, numpy mask). Returns the (H, W) bool mask."""
    with torch.no_grad():
        black = ((torch.zeros(3, S, S) - MEAN) / STD).unsqueeze(0)
        E = feats(encoder, black).reshape(encoder.embed_dim, -1)
        E = E - E.mean(dim=1, keepdim=True)
        U = torch.linalg.svd(E, full_matrices=False)[0][:, : min(r, *E.shape)]
        P = torch.eye(U.shape[0]) - U @ U.T

        def deb(f):
            C, h, w = f.shape
            return F.normalize((P @ f.reshape(C, -1)).reshape(C, h, w), dim=0)

        ref_f = [feats(encoder, load(i, S)) for i, _ in refs]
        ref_m = [load_mask(m, S) for _, m in refs]
        tgt = feats(encoder, load(target, S))
        C, h, w = tgt.shape
        ref_d = [deb(f) for f in ref_f]
        tgt_d = deb(tgt)
        lows = [low_res(m, h, w) for m in ref_m]
        protos = [ref_d[s][:, lows[s]].mean(dim=1) for s in range(len(refs))]
        p = F.normalize(torch.stack(protos).mean(0), dim=0)
        s = torch.einsum("chw,c->hw", tgt_d, p)
        fwd = s > 0
        if not fwd.any():
            fwd = s > torch.quantile(s.flatten(), 0.9)
        votes = torch.zeros(h, w, dtype=torch.int64)
        for sh in range(len(refs)):
            R = ref_d[sh].reshape(C, -1)
            for y in range(h):
                for x in range(w):
                    j = int((R.T @ tgt_d[:, y, x]).argmax())
                    votes[y, x] += int(lows[sh].reshape(-1)[j])
        cand = fwd & (votes >= math.ceil(len(refs) / 2))
        low = torch.zeros(h, w, dtype=torch.bool)
        if cand.any():
            X = tgt.reshape(C, -1).T
            D = (1 - (X @ X.T).clamp(-1, 1)).numpy()
            labels = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
                                             distance_threshold=1 - tau).fit_predict(D)
            labels = torch.from_numpy(labels).reshape(h, w)
            K = int(labels.max()) + 1
            Xd = tgt_d.reshape(C, -1).T
            pd = torch.stack([F.normalize(Xd[labels.reshape(-1) == k].mean(0), dim=0) for k in range(K)])
            po = torch.stack([F.normalize(X[labels.reshape(-1) == k].mean(0), dim=0) for k in range(K)])
            area = torch.tensor([float((cand & (labels == k)).sum()) / float((labels == k).sum()) for k in range(K)])
            overlapping = [k for k in range(K) if (cand & (labels == k)).any()]
            seed = max(overlapping, key=lambda k: (float(pd[k] @ p), -k))
            area[seed] = 1.0
            for k in range(K):
                cross = float(s[labels == k].mean())
                intra = float(po[seed] @ po[k])
                if cross * intra * float(area[k]) > thr:
                    low |= labels == k
        up = F.interpolate(low[None, None].float(), size=(S, S), mode="bilinear", align_corners=False)[0, 0] > 0.5
        H, W = target.height, target.width
        return F.interpolate(up[None, None].float(), size=(H, W), mode="bilinear", align_corners=False)[0, 0] > 0.5
