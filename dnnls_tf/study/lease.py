"""A lease on a run store: one machine writes it at a time, even through a synced folder such as Drive.

`StoreLock` keeps two processes of one machine apart with `flock`, which another
machine sharing the store through Google Drive (a second Colab runtime) does not see.
The lease is a file beside the lock, results/<profile>/.lease.json, naming its holder:
host, pid, a random token, when it was taken and its last heartbeat (Unix seconds,
the holder's clock).

The rules:
  take     free when there is no lease, when it is ours (same token), when its holder
           is a process of this host that is gone, or when it is stale: its last
           heartbeat is more than `stale_after` (STALE_SECONDS, 600 s) old. Otherwise
           the writer is refused in one line that names the holder and when its lease
           goes stale if it stops. Written whole (temporary name, rename), then read
           back: of two machines that wrote it at once, the one whose token is not
           there stops.
  renew    a daemon thread rewrites the heartbeat every `heartbeat` seconds
           (HEARTBEAT_SECONDS, 60), so a live holder's lease never goes stale unless its
           writes stop reaching the store for 10 minutes (Drive disconnected).
  check    before each run is saved (`RunStore.save`), before the runner hands out more
           work (its workers save runs too) and at each heartbeat, the holder checks the
           lease is still its own; if another machine took it over, the holder stops
           with one line instead of writing on.
  release  the holder removes the lease when it finishes (a kill leaves it: then the
           pid rule frees it on the same host at once, the stale rule elsewhere).

Limits: Drive propagates files between machines with a delay (seconds, sometimes a
minute), so two runtimes started within that delay can both take the lease. The store
stays sound then too: runs are named by their content's hash and written whole, so the
worst case is a run trained twice. Staleness compares the reader's clock with the
holder's; NTP-synced clocks differ by far less than 600 s.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from dnnls_tf.atomic import process_alive, write_json
from dnnls_tf.errors import StoreError

log = logging.getLogger(__name__)

LEASE_FILE = ".lease.json"
HEARTBEAT_SECONDS = 60.0
STALE_SECONDS = 600.0


def this_host() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as its file says."""

    host: str
    pid: int
    token: str
    acquired: float
    heartbeat: float

    def describe(self, now: float) -> str:
        return f"host {self.host} (pid {self.pid}, last heartbeat {max(now - self.heartbeat, 0):.0f} s ago)"


class Lease:
    """The lease on one store folder (see the module's rules); `acquire`, then `release`."""

    def __init__(self, folder: Path, *, heartbeat: float = HEARTBEAT_SECONDS, stale_after: float = STALE_SECONDS,
                 host: str | None = None, clock=time.time):
        self.path = Path(folder) / LEASE_FILE
        self.heartbeat, self.stale_after, self.clock = heartbeat, stale_after, clock
        self.host, self.pid, self.token = host or this_host(), os.getpid(), uuid.uuid4().hex
        self.lost: str | None = None  # why the lease is no longer ours (another machine took it over)
        self._acquired = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> Holder | None:
        """The holder the lease file names (None: no lease; a damaged file is taken as no lease, with a warning)."""
        try:
            return Holder(**{key: value for key, value in json.loads(self.path.read_text()).items()
                             if key in Holder.__dataclass_fields__})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as error:
            log.warning("the lease %s does not read (%s): taken as no lease", self.path, type(error).__name__)
            return None

    def _write(self) -> None:
        now = self.clock()
        write_json(self.path, asdict(Holder(self.host, self.pid, self.token, self._acquired or now, now)))

    def acquire(self) -> None:
        """Take the lease, or raise StoreError (one line) naming the machine that holds it."""
        holder, now = self.read(), self.clock()
        if holder is not None and holder.token != self.token:
            age = now - holder.heartbeat
            if holder.host == self.host and not process_alive(holder.pid):
                log.info("taking over the lease of %s: that process is gone", holder.describe(now))
            elif age > self.stale_after:
                log.warning("taking over the stale lease of %s (stale after %.0f s)", holder.describe(now),
                            self.stale_after)
            else:
                raise StoreError(f"{self.path.parent} is being written by {holder.describe(now)}; its lease goes "
                                 f"stale {self.stale_after - age:.0f} s after its last heartbeat if it stops: stop "
                                 f"that runtime or wait")
        self._acquired = now
        self._write()
        confirmed = self.read()
        if confirmed is None or confirmed.token != self.token:
            raise StoreError(f"{self.path.parent} was taken at the same moment by "
                             f"{confirmed.describe(now) if confirmed else 'another writer'}: run again later")
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="dnnls_tf-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self.renew()
            except StoreError:  # lost: `check` reports it before the next run is saved
                return
            except OSError as error:  # the store is unreachable for now: the next beat tries again
                log.warning("cannot renew the lease %s: %s", self.path, error.strerror or error)

    def renew(self) -> None:
        """Write a new heartbeat, after checking the lease is still ours."""
        self.check()
        self._write()

    def check(self) -> None:
        """Raise StoreError (one line) if the lease is no longer ours."""
        if self.lost is None:
            holder = self.read()
            if holder is None or holder.token != self.token:
                taker = holder.describe(self.clock()) if holder else "nobody (the lease file is gone)"
                self.lost = (f"the lease on {self.path.parent} was taken over by {taker} while this process "
                             f"({self.host}, pid {self.pid}) was writing: stopped; finished runs are stored")
        if self.lost is not None:
            raise StoreError(self.lost)

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        holder = self.read()
        if holder is not None and holder.token == self.token:
            self.path.unlink(missing_ok=True)
