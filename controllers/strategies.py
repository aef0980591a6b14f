"""Named routing strategies: how paths are chosen and how service endpoints are chosen.

A strategy is a pair (path metric, endpoint policy), so the experiments can compare, say,
geo-proximity against lowest measured latency while everything else stays equal.
"""

from __future__ import annotations

from dataclasses import dataclass


class UnknownStrategy(ValueError):
    pass


@dataclass(frozen=True)
class Strategy:
    name: str
    path_metric: str  # controllers.routing.PATH_METRICS
    endpoint_policy: str  # controllers.services.ENDPOINT_POLICIES
    description: str


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("hops", "hops", "fewest-hops",
             "fewest switch hops (ties by latency); nearest endpoint by hop count"),
    Strategy("latency", "latency", "lowest-latency",
             "lowest latency paths (configured delays, or measured where they clearly differ); "
             "endpoint with the lowest path latency"),
    Strategy("geo", "latency", "geo",
             "lowest latency paths; endpoint by geoproximity with bias (Route 53 rule)"),
    Strategy("primary-standby", "latency", "primary-standby",
             "lowest latency paths; the first endpoint while it is reachable, else the next"),
    Strategy("fixed", "latency", "fixed",
             "baseline: lowest latency paths; always the first endpoint, no failover"),
)}
DEFAULT_STRATEGY = "latency"
# What `lab compare` sets side by side unless told otherwise (fixed is a baseline for tests).
COMPARED = ("hops", "latency", "geo", "primary-standby")


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        raise UnknownStrategy(f"unknown strategy {name!r} (choose from {', '.join(STRATEGIES)})") from None
