"""Runs over several processes or machines: how long a collective may wait, and a lost peer as one line.

A peer that dies closes its connections, and gloo fails the collective at once; a peer that stops
answering (SIGSTOP, a frozen machine, a network partition) is only noticed when the collective
times out. DDP's gradient all-reduce over gloo did not time out at all here (a SIGSTOPped peer
held the other process for minutes with a 20 s timeout), so training also runs a `Watchdog`:
no progress within the timeout ends the process with the same one line. cardtune's timeout is
COLLECTIVE_TIMEOUT_S (torch's default is 30 minutes): training sets it with `--ddp_timeout`,
prediction with `--ddp-timeout`. A collective waits for the slowest
process's share of work (a prediction round: one chunk each), so raise it for a model that takes
longer than that per chunk, or give it smaller chunks.
"""

from __future__ import annotations

import datetime
import os
import sys
import threading
import time

from pipelines.errors import CardtuneError

COLLECTIVE_TIMEOUT_S = 180

# What gloo and the c10d store say when a peer has gone (the exception types vary across torch versions).
_DIED = ("connection reset by peer", "connection closed by peer", "broken pipe", "connection refused",
         "read error", "write error")
_SILENT = ("timed out", "timeout")


class PeerLost(CardtuneError):
    """Another process of a launched run died or stopped answering."""


def timeout(seconds: float | None = None) -> datetime.timedelta:
    """The collective timeout as torch.distributed takes it."""
    return datetime.timedelta(seconds=seconds or COLLECTIVE_TIMEOUT_S)


def lost_peer(err: BaseException, seconds: float, resume: str) -> PeerLost | None:
    """`err` as one line when it is a collective that lost a peer (None otherwise).

    `resume`: how to continue, for the end of the line."""
    chain, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        chain.append(err)
        err = err.__cause__ or err.__context__
    texts = " | ".join(f"{type(e).__name__}: {e}" for e in chain).lower()
    distributed = any(type(e).__module__.startswith("torch.distributed") or "gloo" in str(e).lower()
                      or type(e).__name__.startswith("Dist") for e in chain)
    if not distributed:
        return None
    if any(marker in texts for marker in _SILENT):
        what = (f"another process of the run stopped answering (no reply within --ddp-timeout {seconds:g} s: "
                "stopped, frozen or cut off from the network)")
    elif any(marker in texts for marker in _DIED):
        what = "another process of the run died (its connection closed: killed, crashed or its machine went down)"
    else:
        return None
    return PeerLost(f"{what}; {resume}")


class Watchdog:
    """Ends this process (one line, exit code 2) when `beat` has not been called for `seconds`:
    for the waits that no collective timeout ends (DDP's all-reduce over gloo)."""

    def __init__(self, seconds: float, resume: str) -> None:
        self.seconds, self.resume = seconds, resume
        self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="cardtune-watchdog", daemon=True)

    def start(self) -> None:
        self.last = time.monotonic()
        self._thread.start()

    def beat(self) -> None:
        self.last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(min(5.0, self.seconds / 4)):
            if time.monotonic() - self.last > self.seconds:
                print(f"error: another process of the run stopped answering (no progress within --ddp_timeout "
                      f"{self.seconds:g} s: stopped, frozen or cut off from the network); {self.resume}",
                      file=sys.stderr, flush=True)
                os._exit(2)  # the main thread is stuck in a collective: no orderly way out
