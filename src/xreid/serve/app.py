"""The REST API and web page of ``xreid serve`` (FastAPI; the OpenAPI page is ``/docs``, served
offline like everything else).

Security: loopback only by default (the Host header must then name the loopback, against DNS
rebinding); any other address needs a token, and with a token every request must carry it
(``Authorization: Bearer``, the ``X-Xreid-Token`` header, or the cookie set by opening
``/?token=...`` once). Request bodies are limited (uploads by ``Limits.max_upload_bytes``, the rest to
64 KiB) while they are read; images are recognised from their content and refused above a pixel
count before decoding; no path is taken from a request; no CORS headers are sent.

Cross-site requests (``xreid.serve.crosssite``): a request another web site makes the analyst's
browser send is refused (403): any ``/api/`` request marked ``Sec-Fetch-Site: cross-site`` or
``same-site``; any write whose ``Origin`` is not the server's own; and any write with no ``Origin``
whose Content-Type is one a page may send cross-site without a preflight (``text/plain``, forms) unless
it carries ``X-Xreid-Client``. Programs (curl, httpx) send JSON or ``application/octet-stream``.
Decoded upload images are kept in a byte-budgeted cache (``Limits.decoded_cache_bytes``), never per
upload; at most ``Limits.worker_threads`` requests run in threads at once, and the process's native
memory is kept flat under load (``xreid.serve.memory``). No secret in any log
(``xreid.serve.redact``): the token is redacted from uvicorn's logs and the audit log.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from contextlib import asynccontextmanager
from importlib import resources
from typing import Optional

from anyio import to_thread
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from xreid.errors import (Gone, InvalidInput, NotFound, NotStored, TooLarge, Unavailable, UnsupportedMedia,
                          XreidError)
from xreid.serve.audit import AuditError
from xreid.serve.case import CaseSession, public_key
from xreid.serve.crosssite import cross_site_refusal
from xreid.serve.schema import (BoxRequest, ErrorReply, InfoReply, ItemReply, MarkReply, MarkRequest, SearchReply,
                                SearchRequest, UploadReply, validation_message)
from xreid.workflows.explain import render_explained

log = logging.getLogger(__name__)

JSON_BODY_LIMIT = 64 * 1024
COOKIE = "xreid_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")
#: explanation and report pages: self-contained HTML with inline styles and data: images, no script
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; frame-ancestors 'none'")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to expose a case beyond this machine without a token (ValueError saying what to do)."""
    if token is not None and len(token) < 16:
        raise ValueError("the token must have at least 16 characters "
                         "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe())')")
    if not is_loopback(host) and not token:
        raise ValueError(f"--host {host} makes the case reachable from other machines: give a token with --token "
                         f"or $XREID_TOKEN (make one with: python3 -c 'import secrets; print(secrets.token_urlsafe())')"
                         f", or serve on 127.0.0.1")


# -- middleware --

class Guard:
    """Token check, Host check, body limits and security headers, as plain ASGI (bodies are counted
    while they arrive, so a chunked upload without Content-Length is stopped at the limit too)."""

    def __init__(self, app, token: str | None, allowed_hosts: list[str] | None, upload_limit: int):
        self.app, self.token, self.allowed_hosts, self.upload_limit = app, token, allowed_hosts, upload_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        if self.allowed_hosts is not None:
            host = headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
            if name not in self.allowed_hosts:
                return await _send_json(send, 400, f"Host {host!r} is not served here (loopback only)")
        refusal = cross_site_refusal(scope["method"], path, headers, scope.get("scheme", "http"))
        if refusal:
            return await _send_json(send, 403, refusal)
        if self.token and not self._authorised(headers, scope):
            if path == "/" and scope["method"] == "GET":
                return await _send(send, 401, b"<!doctype html><meta charset=utf-8><title>xreid</title><p>This case "
                                   b"needs its token: open <code>/?token=...</code> once (the server printed it).",
                                   "text/html; charset=utf-8")
            return await _send_json(send, 401, "token required (Authorization: Bearer TOKEN)")
        limit = self.upload_limit if path == "/api/uploads" else JSON_BODY_LIMIT
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await _send_json(send, 413, f"request body of {int(length):,} bytes; at most {limit:,}")
        seen, started, refused = 0, False, False

        async def limited_receive():
            nonlocal seen, started, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # answer now; the app sees the client go away and its reply is dropped
                    refused = True
                    if not started:
                        started = True
                        await _send_json(send, 413, f"request body larger than {limit:,} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def secured_send(message):
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                         (b"cache-control", b"no-store")]
                have = {k.lower() for k, _ in message.get("headers", [])}
                if b"content-security-policy" not in have:
                    csp = DOCS_CSP if path.startswith("/docs") else PAGE_CSP
                    extra.append((b"content-security-policy", csp.encode()))
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        try:
            await self.app(scope, limited_receive, secured_send)
        except Exception:
            if not refused:
                raise

    def _authorised(self, headers: dict, scope) -> bool:
        offered = []
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            offered.append(auth[7:].strip())
        offered.append(headers.get("x-xreid-token", ""))
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                offered.append(value)
        if scope["path"] == "/" and scope["method"] == "GET":
            from urllib.parse import parse_qs

            offered += parse_qs(scope.get("query_string", b"").decode()).get("token", [])
        return any(o and hmac.compare_digest(o.encode(), self.token.encode()) for o in offered)


async def _send(send, status: int, body: bytes, content_type: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send, status: int, detail: str) -> None:
    import json

    await _send(send, status, json.dumps({"detail": detail}).encode(), "application/json")


# -- the app --

def _static_dir():
    return resources.files("xreid.serve") / "static"


def _jpeg(data: bytes) -> Response:
    return Response(data, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"})


def _html(page: str, download: str | None = None) -> HTMLResponse:
    headers = {"content-security-policy": REPORT_CSP}
    if download:
        headers["content-disposition"] = f'attachment; filename="{download}"'
    return HTMLResponse(page, headers=headers)


#: domain errors -> HTTP status, most specific first
STATUS = ((TooLarge, 413), (UnsupportedMedia, 415), (Gone, 410), (NotFound, 404), (InvalidInput, 400),
          (Unavailable, 503), (NotStored, 507))
#: what the routes' documentation lists as their error replies
ERRORS = {400: {"model": ErrorReply, "description": "invalid input"},
          404: {"model": ErrorReply, "description": "not found"}}


def status_of(exc: XreidError) -> int:
    """The HTTP status of a domain error (400 for a kind not listed)."""
    return next((status for kind, status in STATUS if isinstance(exc, kind)), 400)


def create_app(session: CaseSession, token: str | None = None, allowed_hosts: list[str] | None = None):
    """The ASGI app for ``session``. ``allowed_hosts``: Host header names accepted (None: any;
    ``xreid serve`` passes the loopback names when it binds the loopback)."""
    from xreid.serve.redact import add_secret

    add_secret(token)  # never written to a log or the audit log, however it arrives

    @asynccontextmanager
    async def lifespan(app):
        # at most `worker_threads` requests in threads at once (AnyIO's default is 40): each thread's
        # working memory (decoded images, maps, its malloc heap) stays, so the bound is on memory too
        to_thread.current_default_thread_limiter().total_tokens = session.limits.worker_threads
        yield

    app = FastAPI(title="xreid search", version="1", lifespan=lifespan,
                  description="Search a gallery index by image or gallery item, with attribute, camera and time "
                              "filters; explain results; mark them; export reports. Images are named by id.",
                  docs_url=None, redoc_url=None)

    @app.exception_handler(XreidError)
    async def domain_error(request: Request, exc: XreidError):
        return JSONResponse({"detail": str(exc)}, status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        # never echo the input back (it may be raw bytes, NaN or huge): where and what, in words
        return JSONResponse({"detail": validation_message(exc.errors())}, status_code=422)

    @app.exception_handler(AuditError)
    async def audit_failed(request: Request, exc: AuditError):
        log.error("%s", exc)  # the path for the operator; the client is told no server path
        return JSONResponse({"detail": f"not done: the case's audit log cannot be written ({exc.reason}); "
                                       f"nothing is shown that the log does not hold"}, status_code=507)

    static = _static_dir()
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    try:
        import swagger_ui_bundle

        app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
        have_docs_assets = True
    except ImportError:  # the API still works; /docs says what is missing
        have_docs_assets = False

    @app.get("/", include_in_schema=False)
    def page(request: Request, token: Optional[str] = None):
        if token:  # the token came in the address: keep it in a cookie and drop it from the address bar
            resp = RedirectResponse("/", status_code=303)
            resp.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return resp
        return HTMLResponse((static / "index.html").read_text())

    @app.get("/docs", include_in_schema=False)
    def docs():
        if not have_docs_assets:
            return HTMLResponse("<p>The API page needs the swagger-ui-bundle package (pip install "
                                "swagger-ui-bundle); the API itself is described at /openapi.json.</p>")
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="/openapi.json", title="xreid search API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")

    @app.get("/api/info", response_model=InfoReply, summary="The case: size, model, attributes, cameras, time range, calibration, limits")
    def info():
        return session.info()

    @app.post("/api/uploads", status_code=201, response_model=UploadReply,
              responses={**ERRORS, 413: {"model": ErrorReply, "description": "too large"},
                         415: {"model": ErrorReply, "description": "not an accepted image"}},
              summary="Upload a query image (the request body is the image file; JPEG, PNG, BMP, WebP, GIF, TIFF)",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def upload(request: Request, name: Optional[str] = Query(None, description="file name, for display only")):
        data = await request.body()
        return await run_in_threadpool(session.upload, data, name)

    @app.get("/api/uploads/{upload_id}/image", response_class=Response, responses=ERRORS, summary="An uploaded image (JPEG)")
    def upload_image(upload_id: str):
        return _jpeg(session.upload_image(upload_id))

    @app.post("/api/search", response_model=SearchReply, response_model_exclude_unset=True, responses=ERRORS,
              summary="Search with uploaded images and / or gallery items, and / or a description")
    def search(req: SearchRequest):
        return session.search(req.uploads, req.items, req.k, req.filters.as_dict(), req.threshold, req.description,
                              req.camera)

    @app.get("/api/items/{item}", response_model=ItemReply, response_model_exclude_unset=True, responses=ERRORS,
             summary="A gallery item's metadata and attribute probabilities")
    def item(item: int):
        row = session.check_item(item).row(item)
        return {**row, "path": public_key(row["path"])}

    @app.get("/api/items/{item}/thumbnail", response_class=Response, responses=ERRORS, summary="A gallery item's thumbnail (JPEG, 128 px high)")
    def thumbnail(item: int):
        return _jpeg(session.thumbnail(item))

    @app.get("/api/items/{item}/image", response_class=Response, responses=ERRORS, summary="A gallery item's image (JPEG)")
    def image(item: int):
        return _jpeg(session.image(item))

    @app.get("/api/items/{item}/sighting", responses=ERRORS, summary="A sighting's crops (with their measures), frames and time span")
    def sighting(item: int):
        from xreid.serve.sightings import sighting as details

        return details(session, item)

    @app.get("/api/items/{item}/keyframe", responses=ERRORS, summary="A sighting's key frame with its box drawn (JPEG)")
    def keyframe(item: int):
        from xreid.serve.sightings import sighting_file

        return _jpeg(sighting_file(session, item, "keyframe.jpg"))

    @app.get("/api/items/{item}/frame", responses=ERRORS, summary="A sighting's key frame, clean and full size (JPEG)")
    def sighting_frame(item: int):
        from xreid.serve.sightings import sighting_file

        return _jpeg(sighting_file(session, item, "frame.jpg"))

    @app.post("/api/items/{item}/frame/box", status_code=201, response_model=UploadReply, responses=ERRORS,
              summary="Query by a box drawn on a sighting's frame: {box: [x0, y0, x1, y1]} in its pixels -> an upload")
    def frame_box(item: int, req: BoxRequest):
        from xreid.serve.sightings import box_upload

        return box_upload(session, item, req.box)

    @app.get("/api/items/{item}/crops/{k}", responses=ERRORS, summary="A sighting's k-th best crop (JPEG)")
    def sighting_crop(item: int, k: int):
        from xreid.serve.sightings import sighting_file

        return _jpeg(sighting_file(session, item, f"crop-{k}.jpg"))

    @app.get("/api/timeline", responses=ERRORS, summary="Timeline of sightings (one lane per camera); items: '3,7,12' (default: all)")
    def timeline(items: str | None = None, format: str = "json"):
        from xreid.rendering.timeline import timeline_svg
        from xreid.serve.sightings import timeline_of, timeline_png_bytes

        try:
            ids = [int(v) for v in items.split(",") if v.strip()] if items else None
        except ValueError:
            raise InvalidInput(f"items must be comma-separated row ids, not {items!r}") from None
        data = timeline_of(session, ids)
        if format == "svg":
            return Response(timeline_svg(data), media_type="image/svg+xml")
        if format == "png":
            return Response(timeline_png_bytes(data), media_type="image/png")
        if format != "json":
            raise InvalidInput(f"format must be json, svg or png, not {format!r}")
        return data

    @app.post("/api/marks", response_model=MarkReply, responses=ERRORS, summary="Mark a result as the person ('match') or not ('not_match'); null clears")
    def mark(req: MarkRequest):
        return session.mark(req.search, req.item, req.mark)

    maps_query = Query("default", description="maps to compute: none, default (the model's default maps, less those "
                                              "its map-quality record measured near chance; the page says why), or "
                                              "any of pair, attention, attributes, occlusion")

    @app.get("/api/searches/{search_id}/items/{item}/explanation.html", response_class=HTMLResponse, responses=ERRORS,
             summary="One result explained (the report's card: every attribute, the composition, maps)")
    def explanation_html(search_id: str, item: int, maps: str = maps_query):
        return _html(render_explained(session.explain(search_id, [item], maps)))

    @app.get("/api/searches/{search_id}/items/{item}/explanation.json", response_model=dict, responses=ERRORS,
             summary="One result explained: every number (matching scores, decomposition, maps' summaries)")
    def explanation_json(search_id: str, item: int, maps: str = Query("none", description=maps_query.description)):
        return session.explain(search_id, [item], maps).to_dict()

    @app.get("/api/searches/{search_id}/report.html", response_class=HTMLResponse, responses=ERRORS,
             summary="The search's self-contained HTML report (download), with the analyst's marks")
    def report_html(search_id: str, maps: str = Query("none", description=maps_query.description)):
        page, _ = session.report(search_id, maps)
        return _html(page, download=f"xreid-{search_id}.html")

    @app.get("/api/searches/{search_id}/report.json", response_model=dict, responses=ERRORS, summary="The search's every number as JSON (download)")
    def report_json(search_id: str):
        _, data = session.report(search_id, "none", html=False)
        return JSONResponse(data, headers={"content-disposition": f'attachment; filename="xreid-{search_id}.json"'})

    return Guard(app, token, allowed_hosts, session.limits.max_upload_bytes)


def serve(session: CaseSession, host: str = "127.0.0.1", port: int = 8000, token: str | None = None) -> None:
    """Run the server until interrupted (Ctrl-C)."""
    import faiss

    check_bind(host, token)
    from xreid.serve.memory import keep_flat

    trimmer = keep_flat()  # native memory flat under load (see there); the CLI fixes the heaps' number earlier
    # requests run in parallel threads: one OpenMP thread per search (several per search would
    # oversubscribe the cores as soon as two requests overlap)
    faiss.omp_set_num_threads(1)
    try:
        make_server(session, host, port, token).run()
    finally:
        trimmer.stop()


def make_server(session: CaseSession, host: str = "127.0.0.1", port: int = 8000, token: str | None = None):
    """The uvicorn server of ``serve`` (not started), its logs redacting any token in an address."""
    import uvicorn

    from xreid.serve import redact

    allowed = list(LOOPBACK_NAMES) if is_loopback(host) else None
    config = uvicorn.Config(create_app(session, token, allowed), host=host, port=port, log_level="info",
                            server_header=False)
    redact.install()  # after uvicorn configured its loggers
    return uvicorn.Server(config)
