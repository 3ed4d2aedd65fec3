"""An Apache combined-format access log of page views from many users, rotated once mid-run.

Each line carries a unique request id in its user-agent field (``rid=<n>``), so the demo can prove that
every line written was consumed and archived.  A handful of "crawler" users are much busier than
everyone else; they are what the anomaly query (more than 100 events in 5 minutes) finds.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PAGES = ["/", "/home", "/products", "/products/42", "/products/7", "/cart", "/checkout", "/about",
         "/search", "/account"]
REFERERS = ["-", "https://www.example.com/", "https://search.example.org/?q=shoes"]
RID = re.compile(rb"rid=(\d+)")


def request_id(line: bytes) -> int | None:
    """The request id embedded in a generated line (or in a record derived from one)."""
    match = RID.search(line)
    return int(match.group(1)) if match else None


@dataclass
class LogGenerator:
    """Writes ``rate`` lines per second to ``path`` for ``duration`` seconds, rotating once halfway."""

    path: Path
    rate: float = 200.0
    duration: float = 60.0
    users: int = 300
    crawlers: int = 3
    seed: int = 7
    written: int = 0
    rotated: bool = False

    def line(self, rid: int, rng: random.Random, now: datetime) -> bytes:
        if rng.random() < 0.35:
            user = f"crawler{rng.randrange(self.crawlers)}"
        else:
            user = f"user{rng.randrange(self.users):04d}"
        host = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        page = rng.choice(PAGES)
        status = rng.choice((200, 200, 200, 200, 304, 404))
        size = rng.randrange(200, 20000) if status == 200 else 0
        stamp = now.strftime("%d/%b/%Y:%H:%M:%S +0000")
        referer = rng.choice(REFERERS)
        agent = f"Mozilla/5.0 (demo; rid={rid})"
        return (f'{host} - {user} [{stamp}] "GET {page} HTTP/1.1" {status} {size} "{referer}" "{agent}"\n').encode()

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        rng = random.Random(self.seed)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        out = self.path.open("ab")
        try:
            while not should_stop():
                elapsed = time.monotonic() - started
                if elapsed >= self.duration:
                    break
                if not self.rotated and elapsed >= self.duration / 2:
                    out.close()
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                    out = self.path.open("ab")
                    self.rotated = True
                due = int(elapsed * self.rate) - self.written
                now = datetime.now(UTC)
                if due > 0:
                    out.write(b"".join(self.line(self.written + i, rng, now) for i in range(due)))
                    out.flush()
                    self.written += due
                time.sleep(0.02)
        finally:
            out.close()
