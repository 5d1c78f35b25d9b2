"""Streams sharded across agents: ``agent.shard: "I/N"`` (or ``signalpath run --shard I/N``).

Past what one agent can watch, N agents share one config: agent I of N watches the streams
whose shard is I, each stream with all its endpoints (origin, edges, players, studio), so
localization never needs two agents. Every agent of a site carries the same ``agent.site``;
the rules and dashboards aggregate by site and stream and work unchanged across shards (each
stream's series come from one agent). ``signalpath_agent_info{shard}`` and the traces'
resource (``signalpath.shard``, ``service.instance.id``) say which agent is which.

A stream's shard is chosen by rendezvous (highest-random-weight) hashing of its name with
BLAKE2b: the same on every machine and Python (``hash()`` is salted per process; CRC-32, being
linear, weighed the shards of one name alike and put 168 of 300 test names on one of three
agents), and growing
a fleet from N to N+1 agents moves only the streams the new agent wins (about 1/(N+1) of
them), never one between two old agents.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config import Config

SHARD_RE = re.compile(r"^([1-9][0-9]{0,3})/([1-9][0-9]{0,3})$")
MAX_SHARDS = 1024


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N), 1 <= I <= N <= :data:`MAX_SHARDS`; ``ValueError`` naming the rule."""
    m = SHARD_RE.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a shard: write I/N, e.g. 2/3 (agent 2 of 3)")
    i, n = int(m.group(1)), int(m.group(2))
    if n > MAX_SHARDS:
        raise ValueError(f"{text!r}: at most {MAX_SHARDS} shards")
    if i > n:
        raise ValueError(f"{text!r}: shard {i} of {n} does not exist (1 to {n})")
    return i, n


def shard_of(stream: str, count: int) -> int:
    """The 1-based shard of ``stream`` among ``count`` (rendezvous hashing, module docstring)."""
    return max(range(1, count + 1), key=lambda i: (_weight(i, stream), -i))


def _weight(shard: int, stream: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{shard}/{stream}".encode(), digest_size=8).digest(), "big")


def sharded(config: Config) -> Config:
    """``config`` as agent ``agent.shard`` sees it: its streams only, the broadcasts and
    maintenance windows that name them (a broadcast keeps the streams of this shard), and its
    own incident store (:func:`shard_store`). Without a shard, ``config`` itself."""
    if config.agent.shard is None:
        return config
    i, n = parse_shard(config.agent.shard)
    keep = {s.name for s in config.streams if shard_of(s.name, n) == i}
    broadcasts = [b.model_copy(update={"streams": [s for s in b.streams if s in keep]})
                  for b in config.broadcasts if any(s in keep for s in b.streams)]
    maintenance = [m for m in config.maintenance if m.stream is None or m.stream in keep]
    incidents = config.incidents.model_copy(update={"path": shard_store(config.incidents.path, i, n)})
    return config.model_copy(update={"streams": [s for s in config.streams if s.name in keep],
                                     "broadcasts": broadcasts, "maintenance": maintenance, "incidents": incidents})


def shard_store(path: str, i: int, n: int) -> str:
    """Agent I of N's incident store beside the configured one: ``incidents.db`` ->
    ``incidents.shard-2-of-3.db``. One file per agent: an agent restores the open incidents of
    its store at start and resolves those whose place its config does not name — another
    shard's, were they to share one."""
    p = PurePath(path)
    return str(p.with_name(f"{p.stem}.shard-{i}-of-{n}{p.suffix}"))


__all__ = ["MAX_SHARDS", "parse_shard", "shard_of", "shard_store", "sharded"]
