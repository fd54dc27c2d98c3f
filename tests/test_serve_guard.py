"""The serve guard (xreid.serve.app.Guard) called as plain ASGI: no case, no model, no browser.

The guard must stop a chunked upload while it arrives (counting all chunks so far, not each chunk
alone), accept ``?token=`` only where the printed link lands (GET /), and read the Host header's name
without its port. A stub app behind it records what it was given, so these tests see exactly what
the guard lets through and how much of a body was read before the refusal.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from xreid.serve.app import JSON_BODY_LIMIT, Guard

TOKEN = "s3cret-token-for-tests-0123"
LOOPBACK = ["127.0.0.1", "localhost", "[::1]"]


class Stub:
    """An app that reads the whole body, then answers 200 with how many bytes it read."""

    def __init__(self):
        self.calls = 0
        self.read = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            self.read += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = json.dumps({"read": self.read}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def call(guard: Guard, path="/api/info", method="GET", headers=(), query=b"", chunks=(b"",)):
    """Run one request through the guard; returns (status, body, sent messages, chunks the client sent).
    A write comes as a non-browser client's would (the X-Xreid-Client header), so the cross-site rule
    (tests/test_hostile.py) lets it through to the limits these tests are about."""
    chunks = list(chunks)
    if method not in ("GET", "HEAD") and not any(k.lower() == "x-xreid-client" for k, _ in headers):
        headers = [*headers, ("x-xreid-client", "tests")]
    given = {"n": 0}

    async def receive():
        if given["n"] < len(chunks):
            i = given["n"]
            given["n"] += 1
            return {"type": "http.request", "body": chunks[i], "more_body": i < len(chunks) - 1}
        return {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query, "scheme": "http",
             "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]}
    asyncio.run(guard(scope, receive, send))
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent  # exactly one response, whoever sent it
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return starts[0]["status"], body, sent, given["n"]


# --- body limits --------------------------------------------------------------------------------------

def test_a_chunked_upload_is_refused_as_soon_as_the_chunks_add_up_past_the_limit():
    stub = Stub()
    guard = Guard(stub, None, None, upload_limit=25_000)
    # 30 chunks of 10,000 bytes, no Content-Length; each chunk alone is under the limit
    status, body, _, consumed = call(guard, "/api/uploads", "POST", chunks=[b"\0" * 10_000] * 30)
    assert status == 413 and "25,000" in json.loads(body)["detail"]
    assert consumed == 3  # 10k, 20k, 30k > 25k: refused at the third chunk, the other 27 never read
    assert stub.read == 20_000  # the app saw the first two chunks, then the client "went away"


def test_a_body_exactly_at_the_limit_passes_and_one_byte_more_does_not():
    stub = Stub()
    status, body, _, _ = call(Guard(stub, None, None, upload_limit=20_000), "/api/uploads", "POST",
                              chunks=[b"\0" * 10_000] * 2)
    assert status == 200 and json.loads(body) == {"read": 20_000}
    status, _, _, consumed = call(Guard(Stub(), None, None, upload_limit=20_000), "/api/uploads", "POST",
                                  chunks=[b"\0" * 10_000, b"\0" * 10_000, b"\0"])
    assert status == 413 and consumed == 3


def test_other_paths_get_the_json_limit_and_content_length_is_checked_first():
    stub = Stub()
    guard = Guard(stub, None, None, upload_limit=10 ** 9)  # a huge upload limit does not apply to /api/search
    chunk = b" " * (JSON_BODY_LIMIT // 4)
    status, _, _, consumed = call(guard, "/api/search", "POST", chunks=[chunk] * 10)
    assert status == 413 and consumed == 5
    status, _, _, consumed = call(guard, "/api/search", "POST", chunks=[chunk] * 4)  # exactly 64 KiB
    assert status == 200
    # a declared Content-Length over the limit is refused before anything is read or the app is called
    stub = Stub()
    status, body, _, consumed = call(Guard(stub, None, None, 1000), "/api/uploads", "POST",
                                     headers=[("content-length", "1001")], chunks=[b"\0" * 1001])
    assert status == 413 and consumed == 0 and stub.calls == 0 and "1,001" in json.loads(body)["detail"]
    status, _, _, _ = call(Guard(Stub(), None, None, 1000), "/api/uploads", "POST",
                           headers=[("content-length", "1000")], chunks=[b"\0" * 1000])
    assert status == 200


# --- the token ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,method,query,status", [
    ("/", "GET", f"token={TOKEN}", 200),  # the printed link: accepted (the app then sets the cookie)
    ("/", "GET", "token=wrong-token-wrong-token", 401),
    ("/", "GET", "", 401),
    ("/api/info", "GET", f"token={TOKEN}", 401),  # a token in a URL anywhere else is refused ...
    ("/api/items/0/thumbnail", "GET", f"token={TOKEN}", 401),
    ("/", "POST", f"token={TOKEN}", 401),  # ... and so is a POST to the page
    ("/static/app.js", "GET", f"token={TOKEN}", 401),
])
def test_a_token_in_the_query_string_is_accepted_only_on_get_of_the_page(path, method, query, status):
    stub = Stub()
    got, _, _, _ = call(Guard(stub, TOKEN, None, 1000), path, method, query=query.encode())
    assert got == status and stub.calls == (1 if status == 200 else 0)


def test_the_token_headers_and_cookie():
    def status(headers, path="/api/info"):
        return call(Guard(Stub(), TOKEN, None, 1000), path, headers=headers)[0]

    assert status([("authorization", f"Bearer {TOKEN}")]) == 200
    assert status([("authorization", f"bearer {TOKEN}")]) == 200  # the scheme is case-insensitive
    assert status([("authorization", TOKEN)]) == 401  # no scheme
    assert status([("authorization", f"Basic {TOKEN}")]) == 401
    assert status([("x-xreid-token", TOKEN)]) == 200
    assert status([("x-xreid-token", TOKEN[:-1])]) == 401
    assert status([("cookie", f"other=1; xreid_token={TOKEN}")]) == 200
    assert status([("cookie", f"xreid_tokenx={TOKEN}")]) == 401
    assert status([("cookie", "xreid_token=")]) == 401
    assert status([]) == 401
    # without a token configured, nothing is asked
    assert call(Guard(Stub(), None, None, 1000), "/api/info")[0] == 200
    # the page says how to get in, the API answers JSON
    code, body, _, _ = call(Guard(Stub(), TOKEN, None, 1000), "/")
    assert code == 401 and b"/?token=" in body
    code, body, _, _ = call(Guard(Stub(), TOKEN, None, 1000), "/api/info")
    assert code == 401 and "token required" in json.loads(body)["detail"]


# --- the Host header --------------------------------------------------------------------------------------

@pytest.mark.parametrize("host,status", [
    ("127.0.0.1", 200), ("127.0.0.1:8765", 200), ("localhost:80", 200), ("localhost", 200),
    ("[::1]:8765", 200), ("[::1]", 200),
    ("attacker.example", 400), ("attacker.example:8765", 400), ("127.0.0.1.attacker.example:80", 400),
    ("localhost:8765:8765", 400), ("", 400),
])
def test_the_host_header_is_matched_by_name_without_its_port(host, status):
    stub = Stub()
    got, body, _, _ = call(Guard(stub, None, LOOPBACK, 1000), headers=[("host", host)] if host else [])
    assert got == status, body
    assert stub.calls == (1 if status == 200 else 0)


def test_any_host_when_none_is_configured_and_security_headers_on_every_answer():
    code, _, sent, _ = call(Guard(Stub(), None, None, 1000), headers=[("host", "anything.example:1")])
    assert code == 200
    headers = dict(sent[0]["headers"])
    assert headers[b"x-content-type-options"] == b"nosniff" and headers[b"referrer-policy"] == b"no-referrer"
    assert headers[b"cache-control"] == b"no-store" and b"script-src 'self'" in headers[b"content-security-policy"]
    _, _, sent, _ = call(Guard(Stub(), None, None, 1000), "/docs")
    assert b"'unsafe-inline'" in dict(sent[0]["headers"])[b"content-security-policy"]


# --- what the guard answers, exactly ------------------------------------------------------------------------

def _headers(sent):
    return {k.decode(): v.decode() for k, v in sent[0]["headers"]}


def test_refusals_are_small_json_or_html_answers_with_their_length():
    code, body, sent, _ = call(Guard(Stub(), None, LOOPBACK, 1000), headers=[("host", "evil.example:80")])
    h = _headers(sent)
    assert code == 400 and json.loads(body) == {"detail": "Host 'evil.example:80' is not served here (loopback only)"}
    assert h["content-type"] == "application/json" and h["content-length"] == str(len(body))
    assert h["x-content-type-options"] == "nosniff"
    code, body, sent, _ = call(Guard(Stub(), TOKEN, None, 1000), "/")
    h = _headers(sent)
    assert h["content-type"] == "text/html; charset=utf-8" and h["content-length"] == str(len(body))
    assert body.startswith(b"<!doctype html>")
    code, body, sent, _ = call(Guard(Stub(), TOKEN, None, 1000), "/", "POST")  # only GET / gets the page
    assert code == 401 and json.loads(body) == {"detail": "token required (Authorization: Bearer TOKEN)"}
    code, body, _, _ = call(Guard(Stub(), None, None, 1000), "/api/uploads", "POST", headers=[("content-length", "5000")])
    assert code == 413 and json.loads(body) == {"detail": "request body of 5,000 bytes; at most 1,000"}
    code, body, _, _ = call(Guard(Stub(), None, None, 1000), "/api/uploads", "POST", chunks=[b"\0" * 600] * 2)
    assert code == 413 and json.loads(body) == {"detail": "request body larger than 1,000 bytes"}


def test_a_content_length_that_is_not_a_number_is_left_to_the_streaming_count():
    code, _, _, consumed = call(Guard(Stub(), None, None, 1000), "/api/uploads", "POST",
                                headers=[("content-length", "lots")], chunks=[b"\0" * 600] * 3)
    assert code == 413 and consumed == 2


def test_the_upload_limit_is_for_the_upload_path_only():
    guard = Guard(Stub(), None, None, upload_limit=JSON_BODY_LIMIT * 4)
    chunk = b"\0" * JSON_BODY_LIMIT
    assert call(guard, "/api/uploads", "POST", chunks=[chunk] * 3)[0] == 200  # 192 KiB: fine for an upload
    assert call(guard, "/api/uploads/x", "POST", chunks=[chunk] * 3)[0] == 413  # not the upload path
    assert call(guard, "/api/search", "POST", chunks=[chunk])[0] == 200  # exactly 64 KiB


def test_after_a_refusal_the_app_sees_the_client_gone_and_its_answer_is_dropped():
    seen = []

    async def app(scope, receive, send):
        for _ in range(4):
            seen.append((await receive())["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})
        raise RuntimeError("the app notices the disconnect")  # swallowed: the client was already answered

    code, body, sent, consumed = call(Guard(app, None, None, 10), "/api/uploads", "POST", chunks=[b"123456"] * 4)
    assert code == 413 and consumed == 2 and b"late" not in body and len(sent) == 2
    assert seen == ["http.request", "http.disconnect", "http.disconnect", "http.disconnect"]


def test_an_app_error_without_a_refusal_is_not_swallowed():
    async def app(scope, receive, send):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(Guard(app, None, None, 10)({"type": "http", "method": "GET", "path": "/", "headers": [],
                                                  "query_string": b""}, None, None))


def test_a_response_already_started_is_not_answered_twice():
    async def app(scope, receive, send):  # starts answering, then reads a body that turns out too large
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive())["type"] == "http.request":
            pass
        await send({"type": "http.response.body", "body": b"done"})

    code, body, sent, consumed = call(Guard(app, None, None, 10), "/api/uploads", "POST", chunks=[b"123456"] * 4)
    assert code == 200 and consumed == 2 and body == b""  # no second start; the rest is dropped


def test_security_headers_keep_an_apps_own_policy():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"Content-Security-Policy", b"default-src 'none'")]})
        await send({"type": "http.response.body", "body": b"x"})

    _, _, sent, _ = call(Guard(app, None, None, 10), "/report")
    values = [v for k, v in sent[0]["headers"] if k.lower() == b"content-security-policy"]
    assert values == [b"default-src 'none'"]
    _, _, sent, _ = call(Guard(Stub(), None, None, 10), "/docs-assets/x.js")
    assert b"'unsafe-inline'" in dict(sent[0]["headers"])[b"content-security-policy"]


def test_other_connection_types_pass_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(Guard(app, TOKEN, LOOPBACK, 10)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


def test_token_forms_with_spaces_and_empty_values():
    def status(headers=(), query=b"", path="/api/info"):
        return call(Guard(Stub(), TOKEN, None, 1000), path, headers=headers, query=query)[0]

    assert status([("authorization", f"Bearer   {TOKEN}  ")]) == 200  # spaces around the token
    assert status([("cookie", f" a=1 ;  xreid_token={TOKEN} ")]) == 200
    assert status([("x-xreid-token", "")]) == 401
    assert status(query=f"other=1&token={TOKEN}".encode(), path="/") == 200
    assert status(query=b"token=", path="/") == 401


def test_loopback_names_and_the_bind_check():
    from xreid.serve.app import check_bind, is_loopback

    for host in ("localhost", "127.0.0.1", "127.0.0.2", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "192.168.1.4", "example.com", "[::]", ""):
        assert not is_loopback(host), host
    check_bind("0.0.0.0", "x" * 16)  # 16 characters are enough
    with pytest.raises(ValueError) as err:
        check_bind("0.0.0.0", "x" * 15)
    assert str(err.value).startswith("the token must have at least 16 characters (make one with: python3 -c")
    with pytest.raises(ValueError) as err:
        check_bind("10.0.0.1", None)
    assert str(err.value).startswith("--host 10.0.0.1 makes the case reachable from other machines: give a token "
                                     "with --token or $XREID_TOKEN")
    assert str(err.value).endswith(", or serve on 127.0.0.1")
    check_bind("::1", None)


def test_guard_details_found_by_the_mutation_run():
    from xreid.serve.app import is_loopback

    assert is_loopback("[0:0:0:0:0:0:0:1]")  # a bracketed IPv6 loopback written out in full
    # a response start without a headers list still gets the security headers
    async def bare(scope, receive, send):
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body", "body": b""})

    code, _, sent, _ = call(Guard(bare, None, None, 10), "/api/info")
    h = _headers(sent)
    assert code == 204 and h["x-content-type-options"] == "nosniff"
    assert "'unsafe-inline'" not in h["content-security-policy"]  # the page policy, not the /docs one
    # a request without a Host header is named as such
    code, body, _, _ = call(Guard(Stub(), None, LOOPBACK, 10))
    assert json.loads(body)["detail"] == "Host '' is not served here (loopback only)"
    # the page's 401 says what to do, word for word
    _, body, _, _ = call(Guard(Stub(), TOKEN, None, 10), "/")
    assert body == (b"<!doctype html><meta charset=utf-8><title>xreid</title><p>This case needs its token: open "
                    b"<code>/?token=...</code> once (the server printed it).")
    # cookies separated without spaces, and a token holding '='
    eq_token = "0123456789abcdef=="
    assert call(Guard(Stub(), eq_token, None, 10), headers=[("cookie", f"a=1;xreid_token={eq_token}")])[0] == 200
    # a good header is not undone by a wrong token in the URL
    assert call(Guard(Stub(), TOKEN, None, 10), "/", headers=[("x-xreid-token", TOKEN)],
                query=b"token=wrong-token-wrong-token")[0] == 200


def test_a_page_request_without_a_query_string_field():
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-xreid-token", TOKEN.encode())]}
    asyncio.run(Guard(Stub(), TOKEN, None, 10)(scope, receive, send))
    assert sent[0]["status"] == 200


def test_other_connection_types_get_the_real_receive_and_send():
    got = []

    async def app(scope, receive, send):
        got.append(await receive())
        await send({"type": "lifespan.startup.complete"})

    sent = []

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(message):
        sent.append(message)

    asyncio.run(Guard(app, TOKEN, LOOPBACK, 10)({"type": "lifespan"}, receive, send))
    assert got == [{"type": "lifespan.startup"}] and sent == [{"type": "lifespan.startup.complete"}]
