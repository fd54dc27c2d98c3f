"""``xreid serve``: the REST API as a client uses it, its security rules and the audit log (the
browser tests are in test_serve_browser.py)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import read_jsonl, write_image
from test_index import NAMES, embedder, head_path, root  # noqa: F401  (fixtures)
from xreid.explain.attribute_head import AttributeHead
from xreid.explain.match_probability import MatchCalibration
from xreid.index.gallery import GalleryIndex, read_manifest
from xreid.serve.app import check_bind, create_app, is_loopback
from xreid.serve.case import CaseSession, Limits
from xreid.workflows.index import add_to_index, build_index

TOKEN = "s3cret-token-for-tests-0123"


@pytest.fixture()
def case(embedder, head_path, root, tmp_path):  # noqa: F811
    """An index of the 10 gallery crops with cameras, times and person ids from a CSV."""
    listing = tmp_path / "gallery.csv"
    listing.write_text("path,cam,timestamp,pid,site\n" + "".join(
        f"gallery/img{i:02d}.jpg,{1 + i % 2},2024-05-01T12:{i:02d}:00Z,P{i // 2},{'north' if i < 3 else 'south'}\n"
        for i in range(10)))
    build_index(embedder, AttributeHead.load(head_path), root, tmp_path / "case", list_file=listing, batch_size=4,
                progress=False)
    return tmp_path / "case"


def _calibration(embedder):
    # decreasing in distance; the first and 10th distances weigh nothing, so p depends on d alone
    return MatchCalibration(np.array([-40.0, 0.0, 0.0, 2.0]), embedder.identity(), threshold=0.5)


@pytest.fixture()
def session(case, embedder, head_path, root, tmp_path):  # noqa: F811
    s = CaseSession(case, embedder, AttributeHead.load(head_path), root, calibration=_calibration(embedder),
                    limits=Limits(max_upload_bytes=200_000, max_pixels=100_000))
    yield s
    s.close()


@pytest.fixture()
def client(session):
    return TestClient(create_app(session))


def _png(size=(32, 64), seed=3) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _upload(client, data: bytes, name="q.png", **kw):
    return client.post(f"/api/uploads?name={name}", content=data, headers={"content-type": "application/octet-stream"},
                       **kw)


def _search(client, **body):
    return client.post("/api/search", json=body)


# --- searching --------------------------------------------------------------------------------------

def test_upload_then_search_ranks_as_the_index_does(client, session, root):
    data = (root / "gallery" / "img03.jpg").read_bytes()
    up = _upload(client, data, "img03.jpg")
    assert up.status_code == 201, up.text
    uid = up.json()["id"]
    res = _search(client, uploads=[uid], k=5)
    assert res.status_code == 200, res.text
    body = res.json()
    # the expected ranking by brute force: the cosine distance of the upload's embedding to every row
    q = np.asarray(session.get_upload(uid).vector, np.float64)
    v = np.asarray(session.index.vectors, np.float64)
    d = 1 - (v @ q) / (np.linalg.norm(v, axis=1) * np.linalg.norm(q))
    expected = np.argsort(d, kind="stable")[:5]
    assert expected[0] == 3 and d[3] == pytest.approx(0.0, abs=1e-5)  # the same image, found first
    assert [r["id"] for r in body["results"]] == expected.tolist()
    np.testing.assert_allclose([r["distance"] for r in body["results"]], d[expected], atol=1e-5)
    first = body["results"][0]
    assert first["key"] == "gallery/img03.jpg" and first["identical"] and first["probability"] is None
    assert first["camera"] == "2" and first["pid"] == "P1" and first["time"] == "2024-05-01T12:03:00Z"
    for r in body["results"][1:]:
        p = 1 / (1 + np.exp(40 * r["distance"] - 2))
        assert r["probability"] == pytest.approx(p, abs=1e-4)
        assert r["flagged"] == (r["probability"] < 0.5)
        assert r["thumbnail"] == f"/api/items/{r['id']}/thumbnail"
        assert abs(sum(c["share"] for c in r["composition"]) - 1) < 0.01
    assert client.get(first["thumbnail"]).headers["content-type"] == "image/jpeg"


def test_filters_act_inside_the_search(client, session):
    uid = _upload(client, _png()).json()["id"]
    res = _search(client, uploads=[uid], k=10, filters={"camera": ["2"], "after": "2024-05-01T12:04:00Z"}).json()
    assert {r["key"] for r in res["results"]} == {"gallery/img05.jpg", "gallery/img07.jpg", "gallery/img09.jpg"}
    assert res["candidates"] == 3
    res = _search(client, uploads=[uid], k=10, filters={"fields": {"site": "north"}}).json()
    assert sorted(r["key"] for r in res["results"]) == [f"gallery/img{i:02d}.jpg" for i in range(3)]
    assert all(r["site"] == "north" for r in res["results"])
    info = client.get("/api/info").json()
    assert info["fields"] == [{"name": "site", "values": [{"value": "south", "count": 7}, {"value": "north", "count": 3}]}]
    assert info["cameras"] == [{"value": "1", "count": 5}, {"value": "2", "count": 5}]
    assert info["time"] == {"first": "2024-05-01T12:00:00Z", "last": "2024-05-01T12:09:00Z", "known": 10}
    probs = session.index.probabilities()
    res = _search(client, uploads=[uid], k=10, filters={"attributes": {NAMES[0]: True}}).json()
    assert {r["id"] for r in res["results"]} == set(np.flatnonzero(probs[:, 0] >= 0.5).tolist())


def test_a_gallery_item_and_confirmed_matches_make_a_query_and_are_left_out(client, session):
    uid = _upload(client, _png()).json()["id"]
    first = _search(client, uploads=[uid], k=10).json()
    confirmed = [r["id"] for r in first["results"][:2]]
    for i in confirmed:
        assert client.post("/api/marks", json={"search": first["search"], "item": i, "mark": "match"}).status_code == 200
    again = _search(client, uploads=[uid], items=confirmed, k=10).json()
    assert not set(confirmed) & {r["id"] for r in again["results"]} and len(again["results"]) == 8
    v = session.index.vectors
    q = np.mean([session.get_upload(uid).vector / np.linalg.norm(session.get_upload(uid).vector)]
                + [v[i] for i in confirmed], axis=0)
    d = 1 - v @ (q / np.linalg.norm(q))
    d[confirmed] = np.inf
    assert [r["id"] for r in again["results"]] == np.argsort(d, kind="stable")[:8].tolist()
    by_item = _search(client, items=[4], k=3).json()
    assert 4 not in [r["id"] for r in by_item["results"]]


def test_bad_requests_are_clear_4xx(client):
    uid = _upload(client, _png()).json()["id"]
    cases = [({"uploads": [uid], "k": 0}, 400, "k must be"),
             ({"uploads": [uid], "k": 5, "filters": {"attributes": {"noSuchThing": True}}}, 400, "noSuchThing"),
             ({"uploads": [uid], "filters": {"colour": "red"}}, 400, "unknown filter key"),
             ({"uploads": [uid], "filters": {"after": "yesterday"}}, 400, "yesterday"),
             ({"uploads": ["0" * 20]}, 404, "no upload"),
             ({"uploads": ["../../etc/passwd"]}, 404, "no upload"),
             ({"items": [99]}, 404, "no gallery item"),
             ({}, 400, "at least one")]
    for body, status, words in cases:
        res = _search(client, **body)
        assert res.status_code == status and words in res.json()["detail"], (body, res.text)
    assert client.post("/api/marks", json={"search": "nope", "item": 1, "mark": "match"}).status_code == 404
    assert client.get("/api/items/99/thumbnail").status_code == 404
    assert client.get("/api/items/abc").status_code == 422


def test_search_by_description_needs_no_image(client, session):
    res = _search(client, description="woman with a rucksak, fluffy", k=4, filters={"camera": ["2"]})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["kind"] == "description" and body["candidates"] == 5
    assert body["description"]["unmatched"] == ["fluffy"] and ["rucksak", "rucksack"] in body["description"]["corrections"]
    from xreid.index.gallery import decode_probabilities

    assert body["lookalikes"] and session.index.lookalike_codes is not None
    p = decode_probabilities(session.index.description_codes().T)  # each image read with its look-alikes
    score = np.sqrt((1 - p[:, 0]) * p[:, 1])  # geomean of "not male" and "backpack" (no reliability: weight 1)
    cam2 = np.arange(1, 10, 2)
    expected = cam2[np.lexsort((cam2, -score[cam2]))][:4]
    assert [r["id"] for r in body["results"]] == expected.tolist()
    first = body["results"][0]
    assert [e["text"] for e in first["evidence"]] == ["woman", "backpack"]
    assert first["evidence"][1]["probability"] == pytest.approx(p[first["id"], 1], abs=1e-4)
    assert first["reason"].startswith("Fits ") and first["camera"] == "2"
    # marks work; an explanation needs a query image and says so
    sid = body["search"]
    assert client.post("/api/marks", json={"search": sid, "item": first["id"], "mark": "match"}).status_code == 200
    res = client.get(f"/api/searches/{sid}/items/{first['id']}/explanation.json")
    assert res.status_code == 400 and "search by this image" in res.json()["detail"]
    # "search by this image": the result as the query, the description re-ranks the image search
    joined = _search(client, items=[first["id"]], description="woman, backpack", k=5).json()
    assert joined["kind"] == "image" and joined["joined"] in ("rerank", "filter")
    assert first["id"] not in [r["id"] for r in joined["results"]]
    assert all(r["evidence"][0]["text"] == "woman" and r["reason"] for r in joined["results"])
    assert isinstance(joined["query"]["description"], str)  # "describe this person"
    res = _search(client, description="fluffy")
    assert res.status_code == 400 and "not understood: fluffy" in res.json()["detail"]
    info = client.get("/api/info").json()
    assert {a["name"]: a["phrase"] for a in info["attributes"]}["carryingBackpack"] == "backpack"


# --- uploads -----------------------------------------------------------------------------------------

def test_uploads_are_recognised_by_content_and_limited(client, tmp_path):
    png = _png()
    assert _upload(client, png, "looks-like.jpg").status_code == 201  # the name says JPEG, the content PNG: fine
    res = _upload(client, b"GIF89a but not really an image", "q.gif")
    assert res.status_code == 415 and "q.gif" in res.json()["detail"]
    assert _upload(client, b"#!/bin/sh\nrm -rf /\n", "q.jpg").status_code == 415
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(png)).save(jpeg, "JPEG")
    res = _upload(client, jpeg.getvalue()[:200], "cut.jpg")
    assert res.status_code == 400 and "corrupt or truncated" in res.json()["detail"]
    flat = io.BytesIO()
    Image.new("RGB", (400, 400), (90, 90, 90)).save(flat, "PNG")  # a few hundred bytes, 160,000 pixels
    res = _upload(client, flat.getvalue(), "big.png")  # more than 100,000 pixels: refused from the header
    assert res.status_code == 413 and "too many pixels" in res.json()["detail"]
    res = _upload(client, b"\0" * 300_000, "huge.png")
    assert res.status_code == 413 and "at most 200,000" in res.json()["detail"]

    def chunks():  # no Content-Length: the limit is applied while the body arrives
        for _ in range(30):
            yield b"\0" * 10_000

    res = client.post("/api/uploads", content=chunks(), headers={"content-type": "application/octet-stream"})
    assert res.status_code == 413
    assert client.post("/api/search", content=b"{" + b" " * 70_000 + b"}",
                       headers={"content-type": "application/json"}).status_code == 413
    assert _upload(client, b"", "empty.png").status_code == 400


def test_uploads_are_kept_by_content_hash_and_outlive_the_memory_cache(client, session):
    up = _upload(client, _png(), "../../evil name.png").json()
    assert up["name"] == "evil name.png"
    files = list((session.workdir / "queries").iterdir())
    assert [f.name for f in files] == [f"{up['id']}.png"]
    session._uploads.clear()  # as after a restart
    assert _search(client, uploads=[up["id"]], k=3).status_code == 200
    assert client.get(f"/api/uploads/{up['id']}/image").headers["content-type"] == "image/jpeg"


# --- security ----------------------------------------------------------------------------------------

def test_loopback_by_default_and_a_token_beyond_it():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    check_bind("127.0.0.1", None)
    with pytest.raises(ValueError, match="--token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ValueError, match="16 characters"):
        check_bind("0.0.0.0", "short")
    check_bind("0.0.0.0", TOKEN)


def test_with_a_token_every_request_needs_it(session):
    client = TestClient(create_app(session, token=TOKEN))
    for path in ("/api/info", "/api/items/0/thumbnail", "/openapi.json", "/static/app.js", "/docs"):
        assert client.get(path).status_code == 401, path
    assert client.get("/").status_code == 401
    assert client.get("/api/info", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/api/info", headers={"x-xreid-token": TOKEN}).status_code == 200
    assert client.get("/api/info", headers={"authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
    res = client.get(f"/?token={TOKEN}", follow_redirects=False)  # the link the server prints: sets a cookie
    assert res.status_code == 303 and res.headers["location"] == "/"
    assert "httponly" in res.headers["set-cookie"].lower() and "samesite=strict" in res.headers["set-cookie"].lower()
    assert client.get("/api/info").status_code == 200  # the client now sends the cookie


def test_host_header_must_be_the_loopback_and_no_cors(session):
    client = TestClient(create_app(session, allowed_hosts=["127.0.0.1", "localhost"]), base_url="http://127.0.0.1")
    assert client.get("/api/info").status_code == 200
    assert client.get("/api/info", headers={"host": "attacker.example"}).status_code == 400  # DNS rebinding
    res = client.options("/api/search", headers={"origin": "http://attacker.example",
                                                 "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in res.headers
    res = client.get("/api/info", headers={"origin": "http://attacker.example"})
    assert "access-control-allow-origin" not in res.headers
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_no_path_is_ever_taken_from_a_request(client):
    for path in ("/static/../../../etc/passwd", "/static/%2e%2e/%2e%2e/cli.py", "/api/items/..%2f..%2fetc/image",
                 "/api/uploads/..%2f..%2fmanifest.json/image"):
        res = client.get(path)
        assert res.status_code in (404, 422) and b"root:" not in res.content, path


def test_the_page_and_the_api_page_work_offline(client):
    page = client.get("/").text
    assert "http://" not in page and "https://" not in page
    js = client.get("/static/app.js").text
    assert "http://" not in js and "https://" not in js and "innerHTML" not in js
    docs = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/search", "/api/uploads", "/api/marks", "/api/items/{item}/thumbnail",
            "/api/searches/{search_id}/report.html"} <= set(paths)


# --- explanations, marks, reports, the audit log --------------------------------------------------------

def test_api_page_shows_reply_shapes_and_domain_errors_map_to_statuses(client):
    api = client.get("/openapi.json").json()
    ok = api["paths"]["/api/search"]["post"]["responses"]
    assert ok["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/SearchReply")
    assert ok["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorReply")
    result = api["components"]["schemas"]["SearchResult"]["properties"]
    assert {"id", "rank", "key", "distance", "probability", "flagged", "line", "composition"} <= set(result)
    assert "UploadReply" in api["components"]["schemas"] and "InfoReply" in api["components"]["schemas"]
    from xreid.errors import InvalidInput, NotFound, TooLarge, UnsupportedMedia, XreidError
    from xreid.serve.app import status_of

    assert [status_of(e("x")) for e in (InvalidInput, NotFound, TooLarge, UnsupportedMedia, XreidError)] == \
        [400, 404, 413, 415, 400]


def test_explanation_marks_report_and_audit_log(client, session):
    uid = _upload(client, _png(), "query.png").json()["id"]
    res = _search(client, uploads=[uid], k=4, filters={"camera": "1"}).json()
    sid, ids = res["search"], [r["id"] for r in res["results"]]
    one = client.get(f"/api/searches/{sid}/items/{ids[1]}/explanation.json").json()
    assert len(one["results"]) == 1 and one["results"][0]["rank"] == 2
    assert one["results"][0]["distance"] == pytest.approx(res["results"][1]["distance"], abs=1e-5)
    page = client.get(f"/api/searches/{sid}/items/{ids[1]}/explanation.html?maps=pair")
    assert page.status_code == 200 and "#2" in page.text and "data:image/jpeg;base64" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert client.get(f"/api/searches/{sid}/items/{ids[1]}/explanation.html?maps=sketch").status_code == 400
    assert client.post("/api/marks", json={"search": sid, "item": ids[0], "mark": "match"}).json()["confirmed"] == [ids[0]]
    client.post("/api/marks", json={"search": sid, "item": ids[2], "mark": "not_match"})
    assert client.post("/api/marks", json={"search": sid, "item": ids[2], "mark": "maybe"}).status_code == 400
    report = client.get(f"/api/searches/{sid}/report.json")
    assert "attachment" in report.headers["content-disposition"]
    data = report.json()
    assert [r["id"] for r in data["results"]] == ids and data["search"]["filters"] == {"camera": "1"}
    assert [r["mark"] for r in data["results"]] == ["match", None, "not_match", None]
    html = client.get(f"/api/searches/{sid}/report.html").text
    assert "Marked by the analyst: #1 same person; #3 not the person." in html
    # a later search of the same query shows the marks
    again = _search(client, uploads=[uid], k=4, filters={"camera": "1"}).json()
    assert [r["mark"] for r in again["results"]] == ["match", None, "not_match", None]
    log = read_jsonl(session.workdir / "audit.jsonl")
    events = [r["event"] for r in log]
    assert events == ["upload", "search", "explain", "explain", "mark", "mark", "explain", "export", "explain",
                      "export", "search"]
    search = log[1]
    assert search["query"] == {"uploads": [uid], "items": []} and search["filters"] == {"camera": "1"}
    assert [r["id"] for r in search["results"]] == ids and all("probability" in r for r in search["results"])
    assert log[4]["mark"] == "match" and log[4]["item"] == ids[0] and log[4]["key"] == res["results"][0]["key"]


def test_the_session_refuses_another_model_or_head(case, tiny_model, root, head_path, tmp_path):  # noqa: F811
    from xreid.models.loading import load_embedder

    other = load_embedder(tiny_model, backend="torch", flip_average=True)
    with pytest.raises(ValueError, match="flip"):
        CaseSession(case, other, AttributeHead.load(head_path), root)
    head = AttributeHead.load(head_path)
    head.weights = head.weights * 2
    with pytest.raises(ValueError, match="another attribute head"):
        CaseSession(case, load_embedder(tiny_model, backend="torch"), head, root)


# --- an index that grows while it is served -------------------------------------------------------------

def test_the_server_sees_rows_committed_by_index_add(session, embedder, head_path, root):  # noqa: F811
    before = len(session.index)
    add_to_index(embedder, AttributeHead.load(head_path), root, session.case, images=root / "more", batch_size=2,
                 progress=False)
    session._checked -= 2  # the once-a-second check is due
    assert len(session.index) == before + 3


@pytest.mark.slow
def test_killing_the_server_during_index_add_loses_nothing(case, tiny_model, head_path, root, tmp_path):  # noqa: F811
    for i in range(40):
        write_image(root / "many" / f"m{i:02d}.jpg", seed=100 + i)
    env = {**os.environ, "XREID_DATA_ROOT": str(root)}
    model = ["--model", str(tiny_model), "--head", str(head_path)]
    server = subprocess.Popen([sys.executable, "-m", "xreid.cli", "serve", str(case), "--port", "0", *model],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    add = subprocess.Popen([sys.executable, "-m", "xreid.cli", "index", "add", str(case), "--images", "many",
                            "--batch-size", "4", *model], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(4)
    server.send_signal(signal.SIGKILL)
    server.wait()
    assert add.wait(timeout=180) == 0, add.stderr.read().decode()
    index = GalleryIndex.open(case)
    assert len(index) == 50 and read_manifest(case)["state"] == "ready"
    # and the other way round: an add killed mid-way keeps every committed batch, readable by a server
    for i in range(160):
        write_image(root / "more2" / f"n{i:03d}.jpg", seed=300 + i)
    add = subprocess.Popen([sys.executable, "-m", "xreid.cli", "index", "add", str(case), "--images", "more2",
                            "--batch-size", "4", *model], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(GalleryIndex.open(case)) < 58:
        time.sleep(0.2)
    assert add.poll() is None, "the add finished before it could be interrupted"
    add.send_signal(signal.SIGKILL)
    add.wait()
    committed = GalleryIndex.open(case)
    assert 58 <= len(committed) < 210 and (len(committed) - 50) % 4 == 0  # whole batches of 4 after the 50
    assert committed.keys[:50].tolist() == index.keys.tolist()


def test_the_page_default_leaves_out_a_map_measured_near_chance(client, session):
    uid = _upload(client, _png(), "query.png").json()["id"]
    res = _search(client, uploads=[uid], k=3).json()
    sid, item = res["search"], res["results"][0]["id"]
    assert '<span class="jet">' in client.get(f"/api/searches/{sid}/items/{item}/explanation.html").text  # maps drawn
    session.map_quality = {"pair": {"deletion_ratio": 0.97, "pairs": 100, "protocol": "PETA-ReID test"}}
    page = client.get(f"/api/searches/{sid}/items/{item}/explanation.html").text
    assert '<span class="jet">' not in page and "pair maps are not drawn by default" in page and "0.970" in page
    forced = client.get(f"/api/searches/{sid}/items/{item}/explanation.html?maps=pair").text
    assert '<span class="jet">' in forced and "not drawn by default" not in forced
