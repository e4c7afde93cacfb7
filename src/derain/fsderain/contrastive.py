"""Contrastive losses on FrequencyEncoder embeddings.

Paired FSDerain (``contrastive_loss``) = ``triplet_weight`` x triplet + InfoNCE, with

- triplet = mean_i relu(||a_i - p_i|| - ||a_i - n_i|| + margin), Euclidean distances of the *unnormalised*
  embeddings (``F.pairwise_distance``, eps 1e-6): the rainy input is a negative only here;
- InfoNCE = cross-entropy of the B x B logits ``normalize(a) @ normalize(p).T / temperature`` with target i
  for row i: the positive of a derained sample is its own ground truth, the other ground truths of the batch
  are its negatives.

The unpaired extension (``clean_class_nce``) has no per-sample positive; see :mod:`derain.fsderain.unpaired`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def triplet(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Mean hinge ``relu(d(a, p) - d(a, n) + margin)`` over the batch, Euclidean d on raw embeddings."""
    pos = F.pairwise_distance(anchor.float(), positive.float())
    neg = F.pairwise_distance(anchor.float(), negative.float())
    return F.relu(pos - neg + margin).mean()


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """InfoNCE with in-batch negatives: row i of cos(a, p) / temperature should pick column i."""
    a = F.normalize(anchor.float(), dim=1)
    p = F.normalize(positive.float(), dim=1)
    logits = a @ p.T / temperature
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


def contrastive_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.3,
                     temperature: float = 0.1, triplet_weight: float = 0.1) -> torch.Tensor:
    """FSDerain's "multi-level" contrastive loss: ``triplet_weight * triplet + info_nce``."""
    return (triplet_weight * triplet(anchor, positive, negative, margin)
            + info_nce(anchor, positive, temperature))


def clean_class_nce(anchor: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                    temperature: float = 0.1) -> torch.Tensor:
    """Multi-positive InfoNCE (our unpaired extension): each anchor against every positive and negative.

    Loss_i = -log( sum_j exp(s(a_i, p_j)) / (sum_j exp(s(a_i, p_j)) + sum_k exp(s(a_i, n_k))) ), with s the
    cosine similarity over ``temperature``. Any clean image is a positive and any rainy input a negative:
    it asks "is this output in the clean class", not "is it this particular image".
    """
    a = F.normalize(anchor.float(), dim=1)
    pos = a @ F.normalize(positives.float(), dim=1).T / temperature
    neg = a @ F.normalize(negatives.float(), dim=1).T / temperature
    everything = torch.cat([pos, neg], dim=1)
    return (torch.logsumexp(everything, dim=1) - torch.logsumexp(pos, dim=1)).mean()
