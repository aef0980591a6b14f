"""`lab link set`, `lab site cut|restore`: run-time changes to the running lab (`lab up`),
through its link control API (dashboard.server; its address is in the run state)."""

from __future__ import annotations

import sys

from lab.cli.output import UsageError, console, fmt


def _control(method: str, path: str, body: dict) -> int:
    """One request to the running lab's control API; what it applied, and how fast."""
    from dashboard.client import ControlError, request

    try:
        reply = request(method, path, body)
    except ControlError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2 if exc.status in (400, 404) else 1
    for link in reply.get("site", {}).get("links", []) if reply.get("site") else [reply["link"]]:
        console.print(f"{link['name']}: {'up' if link['up'] else 'DOWN'}, delay "
                      f"{link['delay_ms']:g} ms, jitter {link['jitter_ms']:g} ms, loss "
                      f"{link['loss_pct']:g} %, rate {fmt(link['rate_mbit'], 0)} Mbit/s")
    console.print(f"applied in {reply['apply_ms']:.1f} ms")
    return 0


def cmd_link_set(args) -> int:
    body = {k: v for k, v in (("delay_ms", args.delay), ("jitter_ms", args.jitter),
                              ("loss_pct", args.loss), ("rate_mbit", args.rate),
                              ("up", args.up)) if v is not None}
    if not body:
        raise UsageError("lab link set: give at least one of --delay, --jitter, --loss, "
                         "--rate, --up, --down")
    return _control("PUT", f"links/{args.link}", body)


def cmd_site(args) -> int:
    return _control("PUT", f"sites/{args.site}", {"cut": args.action == "cut"})
