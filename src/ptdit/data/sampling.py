"""Which samples step s reads: a pure function of (seed, s), so the step is the loader's whole position.

- `EpochShuffle`: global read position g -> sample perm_e[g mod N] with e = g div N and perm_e a permutation
  seeded by (seed, e). Every epoch reads every sample exactly once, in a new order; positions split over ranks
  and workers by index, so nothing is read twice or skipped (docs/data.md#sharding-and-exact-resume).
- `BucketBatches`: each global batch comes from one bucket (docs/data.md#buckets). Epoch e shuffles each
  bucket's samples with (seed, e), cuts them into global batches (a bucket's last, partial batch is filled
  from the start of its own order, so a few samples repeat in that epoch and none is dropped) and shuffles the
  batch order. The number of batches per epoch does not depend on the seed, so step s -> (epoch, batch) is fixed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


class EpochShuffle:
    """Read position -> sample index, a fresh seeded permutation per epoch (see the module docstring)."""

    def __init__(self, length: int, seed: int) -> None:
        if length < 1:
            raise ValueError(f"cannot shuffle an empty dataset (length {length})")
        self.length, self.seed = length, seed
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.length)
        return self._perm

    def __call__(self, position: int) -> int:
        epoch, offset = divmod(position, self.length)
        return int(self.permutation(epoch)[offset])


class BucketBatches(torch.utils.data.Sampler):
    """Per step, this rank's slice of a one-bucket global batch, as `(index, (height, width, frames))` items.

    Args:
        assignment: bucket number of each sample.
        shapes: (height, width, frames) of each bucket.
        start_step, stop_step: the steps to yield.
        global_batch: samples per step over all ranks.
        rank, world_size: this process's slice.
        seed: data seed.
    """

    def __init__(
        self,
        assignment: Sequence[int],
        shapes: Sequence[tuple[int, int, int]],
        *,
        start_step: int,
        stop_step: int,
        global_batch: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        self.assignment = np.asarray(assignment, dtype=np.int64)
        self.shapes = [tuple(int(v) for v in s) for s in shapes]
        self.start, self.stop, self.global_batch = start_step, stop_step, global_batch
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.members = [np.flatnonzero(self.assignment == b) for b in range(len(self.shapes))]
        self.per_epoch = sum(-(-len(m) // global_batch) for m in self.members)
        if self.per_epoch == 0:
            raise ValueError("no sample falls in any bucket")
        self._epoch, self._plan = -1, []

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        """The (bucket, global batch indices) of every step of `epoch`, in order."""
        if epoch == self._epoch:
            return self._plan
        rng = np.random.default_rng([self.seed, epoch, 1])
        batches = []
        for bucket, members in enumerate(self.members):
            if len(members) == 0:
                continue
            order = members[rng.permutation(len(members))]
            count = -(-len(order) // self.global_batch)
            order = np.resize(order, count * self.global_batch)  # fills the last batch from the start (wraps)
            batches += [(bucket, order[k * self.global_batch : (k + 1) * self.global_batch]) for k in range(count)]
        self._epoch, self._plan = epoch, [batches[i] for i in rng.permutation(len(batches))]
        return self._plan

    def batch(self, step: int) -> tuple[int, np.ndarray]:
        """(bucket, global batch indices) of step `step`."""
        epoch, k = divmod(step, self.per_epoch)
        return self.plan(epoch)[k]

    def __iter__(self) -> Iterator[list[tuple[int, tuple[int, int, int]]]]:
        local = self.global_batch // self.world_size
        for step in range(self.start, self.stop):
            bucket, indices = self.batch(step)
            shape = self.shapes[bucket]
            yield [(int(i), shape) for i in indices[self.rank * local : (self.rank + 1) * local]]


__all__ = ["BucketBatches", "EpochShuffle"]
