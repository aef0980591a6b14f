"""Calls to the running lab's control API, found through the run directory's state."""

from __future__ import annotations

import httpx

from lab.runstate import load_state

STATE_KEY = "control_url"


class ControlError(RuntimeError):
    """The request failed; `status` is the API's HTTP status (0: no lab or no answer)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


def control_url() -> str:
    state = load_state()
    if state is None or not state.owner_alive():
        raise ControlError("no lab is running (start one with `lab up` in another terminal)")
    url = state.extra.get(STATE_KEY)
    if not url:
        raise ControlError(f"the running lab (pid {state.pid}) serves no control API")
    return url


def request(method: str, path: str, body: dict | None = None, timeout: float = 10.0) -> dict:
    """`METHOD /v1/PATH` with a JSON body; an error answer raises ControlError with its text."""
    url = f"{control_url()}/v1/{path}"
    try:
        resp = httpx.request(method, url, json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ControlError(f"{url}: {exc}") from None
    try:
        data = resp.json()
    except ValueError:
        raise ControlError(f"{url}: answered {resp.status_code} without JSON", resp.status_code) from None
    if resp.status_code >= 400:
        raise ControlError(data.get("error", f"{url}: {resp.status_code}"), resp.status_code)
    return data
