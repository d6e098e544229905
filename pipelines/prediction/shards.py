"""Several processes predicting one file: chunks dealt round-robin, one writer.

Started by a launcher (`accelerate launch --multi_gpu --num_processes N`, torchrun, or several
machines through `accelerate config`), each process reads the input and scores the chunks whose
index modulo N is its rank. After every round of N chunks, rank 0 gathers the scored chunks (the
output text and the counts) and writes them in input order, then records them in the partial
state exactly as a single process would. The output is therefore the same file, and `--resume`
continues from the last complete round whichever process died, with any number of processes.
Only Python objects travel (gloo, on CPU or GPU machines alike).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pipelines import distributed
from pipelines.errors import CardtuneError

log = logging.getLogger(__name__)
T = TypeVar("T")



def launched_rank() -> tuple[int, int, int]:
    """(rank, world size, local rank) set by the launcher; (0, 1, 0) for a plain process."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


@dataclass
class Group:
    """The processes of one prediction run, seen from one of them."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    _owned: bool = False  # this object started the process group, so it ends it

    @classmethod
    def from_env(cls, timeout_s: float | None = None) -> Group:
        """The launcher's group (joined with gloo), or a group of one. A round waits for its slowest
        chunk for at most `timeout_s` (pipelines/distributed.py): a silent peer ends the run then."""
        rank, size, local_rank = launched_rank()
        if size == 1:
            return cls()
        # transformers' model code (and the torch.distributed modules it imports) before the gloo group:
        # imported after it, a process of a launched prediction aborted at exit ("terminate called without
        # an active exception") in 8 of 9 runs of the two-process tests; imported before it, in none of 7.
        import torch.distributed as dist
        import transformers.modeling_utils  # noqa: F401

        owned = not dist.is_initialized()
        if owned:
            dist.init_process_group("gloo", timeout=distributed.timeout(timeout_s))
        log.info("process %d of %d (local rank %d)", rank, size, local_rank)
        return cls(rank, size, local_rank, owned)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def on_main(self, work: Callable[[], T]) -> T:
        """Run `work` on rank 0 and hand its result to every rank; a CardtuneError it raises is
        raised on every rank (the others would otherwise wait for rank 0 forever)."""
        outcome: Any = None
        if self.is_main:
            try:
                outcome = ("ok", work())
            except CardtuneError as err:
                outcome = ("error", err)
        if self.size > 1:
            import torch.distributed as dist

            box = [outcome]
            dist.broadcast_object_list(box, src=0)
            outcome = box[0]
        if outcome[0] == "error":
            raise outcome[1]
        return outcome[1]

    def gather(self, item: T | None) -> list[T | None]:
        """Every rank's item, in rank order, on rank 0 (other ranks get an empty list)."""
        if self.size == 1:
            return [item]
        import torch.distributed as dist

        items: list | None = [None] * self.size if self.is_main else None
        dist.gather_object(item, items, dst=0)
        return items or []

    def close(self) -> None:
        if self._owned:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._owned = False


def rounds(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive groups of `size` items (the last may be shorter)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
