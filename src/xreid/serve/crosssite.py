"""Refusing requests another web site makes the analyst's browser send (cross-site request forgery).

A page on any origin can make the browser POST to the loopback server without asking the server
first, as long as the request is "simple" (CORS): a method of GET, HEAD or POST, only safelisted
headers, and a ``Content-Type`` of ``text/plain``, ``application/x-www-form-urlencoded`` or
``multipart/form-data`` (or none). The page cannot read the answer, but the write happens. The rule
``xreid serve`` applies (``cross_site_refusal``):

1. A request whose ``Sec-Fetch-Site`` is ``cross-site`` or ``same-site`` is refused on every
   ``/api/`` path, reads included (a foreign page must not fill the audit log with explanations or
   exports either). ``same-origin`` and ``none`` (the analyst typed the address) pass; pages other
   than ``/api/`` (``/``, ``/docs``, ``/static``) may be opened from a link anywhere.
2. A state-changing request (any method but GET, HEAD, OPTIONS) carrying an ``Origin`` header is
   refused unless that origin is the server's own (scheme, host and port of the ``Host`` the request
   was sent to); ``Origin: null`` (sandboxed frames, file: pages) is refused.
3. A state-changing request with neither header (a browser always sends ``Origin`` on a POST, so this
   is a program: curl, httpx, a script) must still be one a page could not have sent as a simple
   request: its ``Content-Type`` must be present and outside the three safelisted types (the API
   takes ``application/json`` and, for uploads, ``application/octet-stream`` or ``image/*``), or it
   must carry the header ``X-Xreid-Client`` (any value). A non-simple request from a foreign page is
   preflighted first, and the server answers no preflight (no CORS headers), so it never arrives.

The page served at ``/`` sends same-origin requests with a JSON or octet-stream body: it passes
rule 2 and 3 alike. Behind a reverse proxy that rewrites ``Host``, the proxy must keep the ``Host``
the browser used (``proxy_set_header Host $host``) or the page's own writes are refused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
#: the Content-Types a cross-site page may send without a preflight
SIMPLE_CONTENT_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")
CLIENT_HEADER = "x-xreid-client"


def _origin_matches(origin: str, host: str, scheme: str) -> bool:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    default = {"http": 80, "https": 443}

    def norm(netloc: str, sch: str) -> str:
        netloc = netloc.lower()
        if netloc.startswith("["):
            name, _, port = netloc[1:].partition("]")
            name, port = f"[{name}]", port.lstrip(":")
        else:
            name, _, port = netloc.partition(":")
        return f"{name}:{port or default.get(sch, '')}"

    return parts.scheme == scheme and norm(parts.netloc, parts.scheme) == norm(host, scheme)


def cross_site_refusal(method: str, path: str, headers: dict[str, str], scheme: str = "http") -> str | None:
    """Why the request must be refused as possibly cross-site (403), or None when it may pass.
    ``headers``: lower-case names."""
    site = headers.get("sec-fetch-site", "").strip().lower()
    if path.startswith("/api/") and site in ("cross-site", "same-site"):
        return (f"refused: a request from another site (Sec-Fetch-Site: {site}); the case accepts requests "
                f"from its own page only")
    if method.upper() in SAFE_METHODS:
        return None
    origin = headers.get("origin")
    if origin is not None:
        if _origin_matches(origin.strip(), headers.get("host", ""), scheme):
            return None
        return f"refused: a request from another origin ({origin!r}); the case accepts writes from its own page only"
    if site in ("same-origin", "none"):
        return None
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if CLIENT_HEADER in headers or (ctype and ctype not in SIMPLE_CONTENT_TYPES):
        return None
    return (f"refused: a {method} without an Origin header needs a Content-Type other than "
            f"{', '.join(SIMPLE_CONTENT_TYPES)} (application/json; application/octet-stream for uploads) or the "
            f"header X-Xreid-Client (see xreid.serve.crosssite)")
