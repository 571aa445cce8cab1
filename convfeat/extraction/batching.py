"""How an extraction batches its windows: the batch size and the order of the items.

Every feature set is batch-invariant except ``bn_mode="batch"`` (the published
network's own behaviour: BN statistics of the current batch), whose features
depend on which clips share a batch.  The study extracted in batches of
:data:`~convfeat.constants.STUDY_BATCH_SIZE` clips in a shuffled order, so when
a run holds a batch-mode set convfeat does the same by default: batches of 256
windows, items in a seeded random order (a permutation of the whole collection
drawn from ``seed``), recorded in the batch-mode set's config.  Other sets'
features do not depend on the batches, so they come out the same either way.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np

from ..constants import STUDY_BATCH_SIZE
from .items import ExtractError

BATCH_ORDERS = ("shuffled", "sorted")   # items in a seeded random order, or sorted by id
DEFAULT_BATCH_SIZE = 8                  # windows per batch when no set depends on the batch


@dataclass(frozen=True)
class Batching:
    """Windows per inference batch (``size``) and the order items enter the batches (``order``, ``seed``)."""

    size: int = DEFAULT_BATCH_SIZE
    order: str = "sorted"
    seed: int | None = None

    def record(self) -> dict:
        """What a batch-mode set's config records: ``{"batch_size", "order", "seed"}``."""
        return {"batch_size": self.size, "order": self.order, "seed": self.seed}

    def arrange(self, todo: list, all_items: list) -> list:
        """``todo`` (items, dicts with an ``id``) in this order: as given (sorted), or by the rank of each
        id in a permutation of ``all_items`` drawn from ``seed`` — so the order of an item does not depend
        on which items are left to do (a resumed run continues in the order of the first)."""
        if self.order == "sorted":
            return list(todo)
        perm = np.random.default_rng(self.seed).permutation(len(all_items))
        rank = {all_items[i]["id"]: r for r, i in enumerate(perm.tolist())}
        return sorted(todo, key=lambda it: rank[it["id"]])


def plan_batches(batch_mode: bool, size: int | None = None, order: str | None = None,
                 seed: int | None = None) -> Batching:
    """The :class:`Batching` of a run; ``batch_mode``: whether a set of the run has ``bn_mode="batch"``.

    Defaults: with a batch-mode set, the study's batches (``size`` 256, ``order`` shuffled, ``seed`` 0);
    otherwise ``size`` 8 in id order (features do not depend on either).  ``order`` and ``seed`` are
    refused without a batch-mode set, where they would change nothing.
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, Integral) or size < 1):
        raise ExtractError(f"--batch-size must be a whole number >= 1, got {size!r}")
    if order is not None and order not in BATCH_ORDERS:
        raise ExtractError(f"--batch-order must be {' or '.join(BATCH_ORDERS)}, got {order!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, Integral)):
        raise ExtractError(f"--batch-seed must be a whole number, got {seed!r}")
    if not batch_mode:
        if order is not None or seed is not None:
            raise ExtractError("--batch-order and --batch-seed only apply to bn_mode batch sets (the only "
                               "features that depend on the batches); add one, e.g. -m choi2017:bn_mode=batch")
        return Batching(int(size) if size is not None else DEFAULT_BATCH_SIZE)
    order = order or "shuffled"
    return Batching(int(size) if size is not None else STUDY_BATCH_SIZE, order,
                    (0 if seed is None else int(seed)) if order == "shuffled" else None)
