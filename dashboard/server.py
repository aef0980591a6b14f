"""The lab's control API and live dashboard: FastAPI served by uvicorn inside `lab up`.

`lab up` owns the running Lab, so it serves run-time link control here (on 127.0.0.1 only,
the address recorded in the run directory's state for `lab link set` and `lab site cut`)
and, with `--dashboard`, the page and its live samples. Routes (all JSON, documented in the
OpenAPI document at /v1/openapi.json; every error is {"error": "..."} with 400 for bad
input, 404 for an unknown link, site or route, 405 for a method a route does not take):

  GET /v1/links                 the links' current parameters and ports
  PUT /v1/links/{name}          change delay, jitter, loss, rate; put its ports up or down
  PUT /v1/sites/{name}          {"cut": true|false}: every link of a site down, or back
  GET|PUT /v1/strategy          the controller's strategy (passed on to its REST API)
  GET /v1/state                 the latest sample (dashboard.live)
  GET /v1/stream                the samples as server-sent events, one a second
  GET /                         the dashboard page (static files, no outside assets)
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Iterator

import httpx
import uvicorn
from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException

from dashboard.client import STATE_KEY
from dashboard.live import ControllerUnavailable, Live
from lab.emulation import EmulationError
from lab.links import LinkParamError
from lab.linkcontrol import RATE_MBIT, LinkChange, LinkControl, UnknownName
from topologies.model import MAX_DELAY_MS

STATIC = Path(__file__).parent / "static"
LOCALHOST = "127.0.0.1"
STREAM_QUEUE = 4


class LinkBody(BaseModel):
    """A change to one link; a field left out keeps its current value."""

    model_config = ConfigDict(extra="forbid", strict=True)

    delay_ms: float | None = Field(None, ge=0, le=MAX_DELAY_MS, allow_inf_nan=False,
                                   description="one-way delay, ms")
    jitter_ms: float | None = Field(None, ge=0, le=MAX_DELAY_MS, allow_inf_nan=False,
                                    description="uniform jitter around the delay, ms")
    loss_pct: float | None = Field(None, ge=0, le=100, allow_inf_nan=False,
                                   description="each frame, each way, lost with this chance")
    rate_mbit: float | None = Field(None, ge=RATE_MBIT[0], le=RATE_MBIT[1], allow_inf_nan=False,
                                    description="rate limit on both switch ports, Mbit/s")
    up: bool | None = Field(None, description="false: both switch ports down (the controller "
                                              "gets a port-down), true: back up")

    @model_validator(mode="after")
    def something(self) -> "LinkBody":
        if all(v is None for v in self.model_dump().values()):
            raise ValueError("give at least one of delay_ms, jitter_ms, loss_pct, rate_mbit, up")
        return self


class SiteBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    cut: bool = Field(description="true: every link of the site down; false: back up")


class StrategyBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(max_length=64, description="one of the controller's strategies")


class Applied(BaseModel):
    link: dict | None = None
    site: dict | None = None
    apply_ms: float = Field(description="time to apply the change here, ms")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(control, live: Live, dashboard: bool = True) -> FastAPI:
    """The API over a LinkControl (lab.linkcontrol) and a Live view of the lab; with
    `dashboard`, the page and the sampling behind it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with httpx.AsyncClient(timeout=2.0) as live.client:
            task = asyncio.create_task(live.run()) if dashboard else None
            yield
            if task is not None:
                task.cancel()

    app = FastAPI(title="hclab control and dashboard", version="1", lifespan=lifespan,
                  openapi_url="/v1/openapi.json", docs_url=None, redoc_url=None,
                  description=__doc__.split("\n\n")[1])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return error(400, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(UnknownName)
    async def unknown(request: Request, exc: UnknownName):
        return error(404, str(exc))

    @app.exception_handler(LinkParamError)
    async def bad_param(request: Request, exc: LinkParamError):
        return error(400, str(exc))

    @app.exception_handler(EmulationError)
    async def failed(request: Request, exc: EmulationError):
        return error(500, f"the change could not be applied: {exc}")

    @app.exception_handler(ControllerUnavailable)
    async def no_controller(request: Request, exc: ControllerUnavailable):
        return error(503, str(exc))

    def changed(kind: str, what: str) -> None:
        live.note("control", f"{kind} {what}")
        live.poke()

    @app.get("/v1/links", summary="every link's parameters and ports")
    def links() -> list[dict]:
        return control.views()

    @app.put("/v1/links/{name}", response_model=Applied, summary="change one link at run time")
    def set_link(name: str, body: Annotated[LinkBody, Body()]) -> Applied:
        applied = control.set_link(name, LinkChange(**body.model_dump()))
        changed("link", f"{name}: " + ", ".join(f"{k}={v}" for k, v in
                                                 body.model_dump(exclude_none=True).items()))
        return Applied(link=applied.state, apply_ms=round(applied.apply_ms, 3))

    @app.put("/v1/sites/{name}", response_model=Applied, summary="cut a site off or restore it")
    def set_site(name: str, body: Annotated[SiteBody, Body()]) -> Applied:
        applied = control.set_site(name, body.cut)
        changed("site", f"{name} {'cut' if body.cut else 'restored'}")
        return Applied(site=applied.state, apply_ms=round(applied.apply_ms, 3))

    @app.get("/v1/strategy", summary="the controller's current strategy")
    async def get_strategy() -> dict:
        return await live.controller("GET", "strategy")

    @app.put("/v1/strategy", summary="switch the controller's strategy")
    async def put_strategy(body: Annotated[StrategyBody, Body()]) -> dict:
        try:
            result = await live.controller("PUT", "strategy", {"name": body.name})
        except ValueError as exc:
            return error(400, str(exc))
        changed("strategy", body.name)
        return result

    @app.get("/v1/state", summary="the latest sample of the running lab")
    def state() -> dict:
        if live.latest is None:
            raise HTTPException(503, "no sample yet (lab up --dashboard samples the lab)")
        return live.latest

    @app.get("/v1/stream", summary="samples as server-sent events (event: sample)")
    async def stream(request: Request):
        if not dashboard:
            raise HTTPException(503, "the dashboard is not running (lab up --dashboard)")
        queue: asyncio.Queue = asyncio.Queue(STREAM_QUEUE)
        live.subscribers.add(queue)
        if live.latest is not None:
            queue.put_nowait(live.latest)

        async def samples():
            try:
                while True:
                    yield {"event": "sample", "data": json.dumps(await queue.get())}
            finally:
                live.subscribers.discard(queue)

        return EventSourceResponse(samples(), ping=15)

    @app.get("/", include_in_schema=False)
    def page():
        if not dashboard:
            raise HTTPException(404, "the dashboard is not running (lab up --dashboard)")
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


class Server:
    """uvicorn in a daemon thread of `lab up`, on 127.0.0.1 and a port the kernel picks
    unless one is given."""

    def __init__(self, app: FastAPI, port: int = 0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOCALHOST, port))
        self.url = f"http://{LOCALHOST}:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                                    timeout_keep_alive=5,
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="dashboard", daemon=True)

    def start(self, timeout: float = 10.0) -> "Server":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the control server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()


@contextmanager
def serve_lab(lab, dashboard: bool = False, port: int = 0) -> Iterator[Server]:
    """Serve a running lab's control API (and the dashboard) while the block runs, its
    address written into the run state for `lab link set` and `lab site cut`."""
    control = LinkControl(lab)
    server = Server(create_app(control, Live(lab, control), dashboard=dashboard), port).start()
    lab.state.extra[STATE_KEY] = server.url
    lab.state.save()
    try:
        yield server
    finally:
        server.stop()
