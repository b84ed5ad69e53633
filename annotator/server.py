"""The annotation tool's HTTP API and page (FastAPI; docs/annotator.md documents every route).

Every request carries the session's token (the `token` query parameter, the `X-STCN-Token` header, or
the cookie the page gets with it) and, unless the server listens on another address, a Host header
naming this machine (127.0.0.1, localhost, [::1]: a page of another site cannot reach the tool through
DNS rebinding). Only the page's own files (a fixed list) and the workspace's data are served; nothing
the client sends is used as a file system path. Request bodies are bounded (`max_body`); every refusal
is a 4xx with a JSON `{"error": "<where>: <problem>; <fix>"}`, never a traceback page.
"""
from __future__ import annotations

import io
import secrets
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from annotator.session import EXPORT_FORMATS, Busy, RequestError, Session
from util.errors import UserError

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"app.js": "text/javascript", "app.css": "text/css"}  # the only files served besides index.html
TOKEN_HEADER = "x-stcn-token"
TOKEN_COOKIE = "stcn_token"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
JSON_BODY_LIMIT = 1 << 20  # bytes of a JSON request (strokes, objects, ...)
JPEG_QUALITY = 92
GZIP_ABOVE = 1024  # bytes of an answer from which it is compressed (when the client accepts gzip)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status)


class Guard:
    """ASGI middleware: the Host header, the token and the request size (module docstring)."""

    def __init__(self, app, token: str, hosts: tuple[str, ...] | None, max_body: int) -> None:
        self.app, self.token, self.hosts, self.max_body = app, token, hosts, max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        problem = self._problem(request)
        if problem is not None:
            await _error(*problem)(scope, receive, send)
            return
        seen = 0

        async def bounded():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, bounded, send)
        except _TooLarge:
            await _error(413, f"request: more than {self.max_body} bytes; send less")(scope, receive, send)

    def _problem(self, request: Request) -> tuple[int, str] | None:
        if self.hosts is not None:
            host = _host_name(request.headers.get("host", ""))
            if host not in self.hosts:
                return 400, (f"Host: {host or '(none)'} is not this machine; open the URL the tool printed "
                             "(127.0.0.1), or start it with --host to serve other names")
        given = (request.query_params.get("token") or request.headers.get(TOKEN_HEADER)
                 or request.cookies.get(TOKEN_COOKIE) or "")
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return 403, "token: missing or wrong; open the URL the tool printed (it holds the token)"
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return 413, f"request: Content-Length {length} is more than {self.max_body} bytes; send less"
        return None


def _where(loc) -> str:
    """The field a validation error names ("frame", "strokes.0"), without FastAPI's body/path/query prefix."""
    return ".".join(str(p) for p in loc if p not in ("body", "path", "query")) or "body"


def _host_name(header: str) -> str:
    """The name of a Host header without its port ("[::1]:8000" -> "[::1]")."""
    if header.startswith("["):
        return header.split("]")[0] + "]"
    return header.rsplit(":", 1)[0]


class _TooLarge(Exception):
    pass


class NewObject(BaseModel):
    name: str | None = None
    colour: list[int] | None = None
    id: int | None = None


class ObjectChange(BaseModel):
    name: str | None = None
    colour: list[int] | None = None


class Propagation(BaseModel):
    frame: int
    direction: str = "both"


class Strokes(BaseModel):
    strokes: list[dict[str, Any]]


class Export(BaseModel):
    formats: list[str] = list(EXPORT_FORMATS)


def create_app(session: Session, token: str, hosts: tuple[str, ...] | None = LOCAL_HOSTS) -> Any:
    """The tool's ASGI application: the API on `session`, guarded by `token` and `hosts` (None: any Host)."""
    h, w = session.ws.size
    app = FastAPI(title="STCN annotation tool", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_ABOVE)  # masks: a byte per pixel, mostly zeros

    @app.exception_handler(RequestError)
    async def bad_request(request: Request, exc: RequestError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{_where(e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:3]]
        return _error(400, "; ".join(parts) + "; see docs/annotator.md for the request's form")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, f"{request.url.path}: {exc.detail}")

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error ({type(exc).__name__}); the server's log has the details")

    # ---------------------------------------------------------------------------------- the page
    @app.get("/")
    def index(request: Request) -> Response:
        response = Response((STATIC / "index.html").read_bytes(), media_type="text/html")
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in PAGES:
            raise StarletteHTTPException(404, "not a file of the page")
        return Response((STATIC / name).read_bytes(), media_type=PAGES[name], headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------------------- reading
    @app.get("/api/status")
    def status() -> dict:
        return session.status()

    @app.get("/api/presence")
    def presence() -> dict:
        return session.presence()

    @app.get("/api/job")
    def job() -> dict:
        return {"job": session.job.as_json() if session.job else None}

    @app.get("/api/frames/{t}/image")
    def frame_image(t: int) -> Response:
        rgb = np.asarray(session.ws.frames[session.check_frame(t)])
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return Response(buffer.getvalue(), media_type="image/jpeg")

    @app.get("/api/frames/{t}/mask")
    def frame_mask(t: int) -> Response:
        mask = session.ws.mask(session.check_frame(t))
        return Response(mask.tobytes(), media_type="application/octet-stream",
                        headers={"X-Height": str(h), "X-Width": str(w)})

    # ------------------------------------------------------------------------------- changing
    @app.put("/api/frames/{t}/mask")
    async def put_mask(t: int, request: Request) -> dict:
        body = await request.body()
        if len(body) != h * w:
            raise RequestError("mask", f"{len(body)} bytes, not height x width = {h} x {w} = {h * w}",
                               "send one byte (the object id, 0 = background) per pixel, row by row")
        labels = np.frombuffer(body, dtype=np.uint8).reshape(h, w).copy()
        await run_in_threadpool(session.set_mask, t, labels)
        return {"frame": t}

    @app.post("/api/frames/{t}/scribbles")
    def scribbles(t: int, body: Strokes) -> dict:
        session.scribble(t, body.strokes)
        return {"frame": t}

    @app.post("/api/objects")
    def add_object(body: NewObject) -> dict:
        return session.add_object(body.name, body.colour, body.id)

    @app.patch("/api/objects/{object_id}")
    def change_object(object_id: int, body: ObjectChange) -> dict:
        return session.update_object(object_id, body.name, body.colour)

    @app.delete("/api/objects/{object_id}")
    def delete_object(object_id: int) -> dict:
        session.delete_object(object_id)
        return {"deleted": object_id}

    @app.post("/api/propagate")
    def propagate(body: Propagation) -> dict:
        return {"job": session.propagate(body.frame, body.direction).as_json()}

    @app.post("/api/cancel")
    def cancel() -> dict:
        job = session.cancel()
        return {"job": job.as_json() if job else None}

    @app.post("/api/export")
    def export(body: Export) -> dict:
        return {"job": session.export(body.formats).as_json()}

    max_body = max(JSON_BODY_LIMIT, h * w + 4096)
    return Guard(app, token, hosts, max_body)


def allowed_hosts(host: str) -> tuple[str, ...] | None:
    """The Host names accepted when listening on `host`: this machine's names, plus `host` itself; None
    (any) when listening on every address (0.0.0.0, ::), where the token alone guards the tool."""
    if host in ("0.0.0.0", "::", ""):
        return None
    return tuple(dict.fromkeys((*LOCAL_HOSTS, host)))


def url_of(host: str, port: int, token: str) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else (f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}/?token={token}"

