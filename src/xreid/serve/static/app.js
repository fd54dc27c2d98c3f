// xreid search page: plain JavaScript, no network beyond this server, every text inserted as text.
"use strict";

const state = {info: null, uploads: [], search: null, marks: new Map(), attrFilter: new Map()};
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

async function api(path, options = {}) {
  const resp = await fetch(path, {credentials: "same-origin", ...options});
  if (!resp.ok) {
    let detail = resp.statusText;
    try { detail = (await resp.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${resp.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return resp.json();
}

// -- facets --

function drawFacets() {
  const info = state.info;
  $("case").textContent = `${info.case} · ${info.count.toLocaleString()} images · model ${info.model}` +
    (info.calibration ? "" : " · no same-person calibration");
  $("threshold").value = info.threshold;
  $("threshold-value").textContent = Number(info.threshold).toFixed(2);
  const cams = $("cameras");
  cams.replaceChildren(...info.cameras.map((c) => el("label", {class: "opt"},
    el("span", {}, el("input", {type: "checkbox", value: c.value, class: "camera"}), ` ${c.value}`),
    el("span", {class: "muted"}, c.count.toLocaleString()))));
  $("camera-facet").hidden = info.cameras.length === 0;
  // the model embeds these cameras' crops in their own way: an upload may be said to come from one
  $("query-camera").replaceChildren(el("option", {value: ""}, "unknown"),
    ...(info.query_cameras || []).map((c) => el("option", {value: c}, c)));
  $("query-camera-row").hidden = !(info.query_cameras || []).length;
  $("time-range").textContent = info.time.known
    ? `${info.time.known.toLocaleString()} images with a time, ${info.time.first} to ${info.time.last} (UTC)`
    : "no image of this case has a time";
  $("fields").replaceChildren(...info.fields.map((f) => el("div", {},
    el("h3", {}, f.name),
    el("select", {class: "field", dataset: {name: f.name}, "aria-label": f.name},
      el("option", {value: ""}, "any"),
      ...f.values.map((v) => el("option", {value: v.value}, `${v.value} (${v.count.toLocaleString()})`))))));
  const byGroup = new Map();
  for (const a of info.attributes) {
    if (!byGroup.has(a.group)) byGroup.set(a.group, []);
    byGroup.get(a.group).push(a);
  }
  const box = $("attributes");
  box.replaceChildren();
  for (const [group, attrs] of byGroup) {
    box.append(el("div", {class: "group"}, group));
    for (const a of attrs) {
      const select = el("select", {"aria-label": a.text, dataset: {name: a.name}, class: "attr"},
        el("option", {value: ""}, "any"), el("option", {value: "yes"}, "yes"), el("option", {value: "no"}, "no"));
      select.addEventListener("change", () => {
        if (select.value) state.attrFilter.set(a.name, select.value === "yes");
        else state.attrFilter.delete(a.name);
      });
      box.append(el("label", {class: "opt" + (a.reliable ? "" : " unreliable"), dataset: {text: a.text.toLowerCase()},
                              title: (a.reliable ? "" : "unreliable for this model: filter with care · ") +
                                     `${a.count.toLocaleString()} images likely have it`},
        el("span", {}, a.text), select));
    }
  }
}

function drawDescribeChips() {
  const box = $("describe-chips");
  const attrs = state.info.attributes.filter((a) => a.phrase).sort((a, b) => (b.reliable - a.reliable) || (b.count - a.count));
  box.replaceChildren(...attrs.map((a) => el("button", {type: "button", class: "chip" + (a.reliable ? "" : " unreliable"),
    title: (a.reliable ? "" : "unreliable for this model: weighted down · ") + `${a.count.toLocaleString()} images likely have it`,
    onclick: (ev) => addWords(ev.shiftKey ? (a.absent_phrase || "no " + a.phrase) : a.phrase)}, a.phrase)));
}

function addWords(words) {
  const box = $("describe");
  const text = box.value.trim();
  box.value = text ? `${text.replace(/,\s*$/, "")}, ${words}` : words;
  updateSearchButton();
}

function description() {
  return $("describe").value.trim();
}

function updateSearchButton() {
  $("search").disabled = state.uploads.length === 0 && !description();
}

function filters() {
  const f = {};
  const cams = [...document.querySelectorAll("input.camera:checked")].map((c) => c.value);
  if (cams.length) f.camera = cams;
  if ($("after").value) f.after = $("after").value;
  if ($("before").value) f.before = $("before").value;
  if (state.attrFilter.size) f.attributes = Object.fromEntries(state.attrFilter);
  const fields = [...document.querySelectorAll("select.field")].filter((s) => s.value);
  if (fields.length) f.fields = Object.fromEntries(fields.map((s) => [s.dataset.name, s.value]));
  return f;
}

// -- query --

async function addFiles(files) {
  for (const file of files) {
    status(`uploading ${file.name}…`);
    try {
      const up = await api(`/api/uploads?name=${encodeURIComponent(file.name)}`, {method: "POST", body: file,
        headers: {"content-type": "application/octet-stream"}});
      if (!state.uploads.some((u) => u.id === up.id)) state.uploads.push(up);
      if (!up.check.usable) status(`${file.name}: ${up.check.problems.join("; ")}`, true);
      else status(`${file.name} ready`);
    } catch (e) {
      status(`${file.name}: ${e.message}`, true);
    }
  }
  drawQueries();
}

function chip(text, cls = "", title = "") {
  return el("span", {class: "chip " + cls, title}, text);
}

function drawQueries() {
  $("queries").replaceChildren(...state.uploads.map((u) => el("figure", {},
    el("img", {src: u.image, alt: "query " + (u.name || u.id)}),
    el("figcaption", {}, u.name || u.id))));
  updateSearchButton();
  drawConfirmed();
}

function confirmed() {
  return [...state.marks.entries()].filter(([, m]) => m === "match").map(([i]) => i);
}

function drawConfirmed() {
  const n = confirmed().length;
  $("confirmed").textContent = n ? `${n} confirmed match${n > 1 ? "es" : ""}` : "";
  $("research").disabled = !(state.search && n);
}

async function runSearch(withConfirmed = false, items = null) {
  const body = {uploads: items ? [] : state.uploads.map((u) => u.id),
                items: items || (withConfirmed ? confirmed() : []),
                k: Number($("k").value), filters: filters(), threshold: Number($("threshold").value),
                description: description() || null};
  if (body.uploads.length && $("query-camera").value) body.camera = $("query-camera").value;
  status("searching…");
  try {
    const t0 = performance.now();
    const res = await api("/api/search", {method: "POST", body: JSON.stringify(body),
                                          headers: {"content-type": "application/json"}});
    state.search = res;
    for (const r of res.results) if (r.mark) state.marks.set(r.id, r.mark);
    const ms = Math.round(performance.now() - t0);
    status(`${res.results.length} results of ${res.candidates.toLocaleString()} images passing the filters ` +
           `(${res.method} search, ${ms} ms)` + (items ? ` · query: gallery item ${items[0]}` : body.items.length ? ` · query: ${body.uploads.length} upload(s) + ` +
           `${body.items.length} confirmed match(es)` : "") +
           (res.joined ? ` · re-ranked by the description (${res.joined})` : ""));
    $("describe-notes").textContent = res.description
      ? ["read as: " + res.description.terms.map((t) => t.text).join(", "), ...res.description.problems].join("\n") : "";
    drawResults();
  } catch (e) {
    status(e.message, true);
  }
}

// -- results --

function scoreClass(s) {
  return s >= 0.7 ? "score-high" : s >= 0.4 ? "score-mid" : "score-low";
}

function drawResults() {
  const res = state.search;
  if (res.kind === "description") {
    $("query-chips").replaceChildren(el("span", {class: "muted"}, "Described: "),
      ...res.description.terms.map((t) => chip(t.text, "", `you said: ${t.said}`)));
  } else {
    const fromItem = !res.query.uploads.length && res.query.items.length === 1;  // "search by this image"
    $("query-chips").replaceChildren(
      fromItem ? el("img", {src: `/api/items/${res.query.items[0]}/thumbnail`, class: "query-thumb",
                            alt: `query: gallery item ${res.query.items[0]}`}) : null,
      el("span", {class: "muted"}, "The model sees in the query: "),
      ...res.query.chips.map((c) => chip(c.text, c.reliable ? "" : "unreliable",
        `${Math.round(100 * c.probability)} %` + (c.reliable ? "" : " · unreliable") + (c.flagged ? ` · ${c.flagged}` : ""))),
      res.query.description ? el("button", {class: "query-actions", title: "the reliable attributes of the query as " +
        "words: edit them and search by description", onclick: () => {
          $("describe").value = res.query.description; state.uploads = []; drawQueries(); $("describe").focus();
          status("Edit the description, then Search.");
        }}, "Describe this person") : null);
  }
  $("results").replaceChildren(...res.results.map((r) => res.kind === "description" ? describedCard(r) : card(r)));
  $("export").hidden = res.kind === "description";  // a report explains results against a query image
  updateExport();
  drawConfirmed();
  drawTimeline();
}

function card(r) {
  const mark = state.marks.get(r.id);
  const prob = r.probability === null ? "—" : `${Math.round(100 * r.probability)} %`;
  const bar = el("div", {class: "bar", title: "share of the distance per attribute; grey: not explained by attributes"});
  for (const s of r.composition) {
    const span = el("span", {title: `${s.label} ${Math.round(100 * s.share)} %`});
    span.style.width = `${100 * s.share}%`;
    span.style.background = s.colour;
    bar.append(span);
  }
  const sighting = r.kind === "sighting";
  const when = sighting ? sightingSpan(r) : (r.time ? r.time.replace("T", " ") : null);
  const meta = [r.camera ? `camera ${r.camera}` : null, when,
                r.pid ? `id ${r.pid}` : null, sighting ? null : r.key].filter(Boolean).join(" · ");
  const node = el("div", {class: `result${mark ? " " + mark : ""}${r.flagged ? " flagged" : ""}`,
                          dataset: {id: r.id, rank: r.rank}},
    el("img", {src: r.thumbnail, alt: `result ${r.rank}`, title: "open the explanation", onclick: () => openDetail(r)}),
    el("div", {class: "body"},
      el("div", {class: "top"}, el("span", {class: "rank"}, `#${r.rank}`),
        el("span", {class: "prob", title: "calibrated probability that this is the same person"}, `same person ${prob}`),
        r.flagged ? el("span", {class: "flag"}, "probably not the person") : null,
        r.identical ? el("span", {class: "flag same"}, "the query picture itself") : null,
        el("span", {class: "dist"}, `d ${r.distance.toFixed(3)}`)),
      el("div", {class: "meta"}, meta),
      el("p", {class: "line"}, r.line),
      r.evidence ? el("p", {class: "line"}, r.reason) : null,
      r.evidence ? evidenceChips(r) : null,
      el("div", {}, ...r.scores.map((s) => chip(`${s.text} ${Math.round(100 * s.score)}`, scoreClass(s.score),
        "matching score of this query attribute"))),
      bar,
      el("div", {class: "muted"}, `attributes explain ${Math.round(100 * r.explained_share)} % of the distance`),
      el("div", {class: "marks"},
        markButton(r, "match", "✓ same person"), markButton(r, "not_match", "✗ not the person"),
        el("button", {class: "why", onclick: () => openDetail(r)}, "Why?"),
        sighting ? el("button", {class: "frames", onclick: () => openSighting(r)}, "Key frame") : null)));
  return node;
}

// --- sightings of footage: time span, key frame with the crop strip, timeline -------------------------

function sightingSpan(r) {
  const t = (iso) => iso ? iso.replace("T", " ").replace("Z", "").replace(/\.\d+$/, "") : null;
  if (r.time) return `${t(r.time)} – ${t(r.end).slice(11)}`;
  return `${Number(r.offset_start).toFixed(1)}–${Number(r.offset_end).toFixed(1)} s of ${r.video}`;
}

async function openSighting(r) {
  try {
    const d = await api(`/api/items/${r.id}/sighting`);
    $("sighting-title").textContent = `Sighting ${r.id} · camera ${d.camera} · frames ${d.frames[0]}–${d.frames[1]}`;
    $("sighting-keyframe").src = `/api/items/${r.id}/keyframe`;
    $("sighting-crops").replaceChildren(...d.crops.map((c, k) => el("img", {
      src: `/api/items/${r.id}/crops/${k}`, alt: `crop ${k}`,
      title: `frame ${c.frame} · detector ${Math.round(100 * c.confidence)} % · quality ${c.quality.toFixed(2)} · ` +
             `occluded ${Math.round(100 * c.occluded)} %`})));
    $("sighting-search").onclick = () => { $("sighting").hidden = true; runSearch(false, [r.id]); };
    stopDrawing();
    $("sighting-draw").disabled = !d.frame;
    $("sighting-draw").onclick = () => startDrawing(r);
    $("sighting").hidden = false;
    $("sighting").scrollIntoView({behavior: "smooth"});
  } catch (e) { status(e.message, true); }
}

// a query box drawn on a sighting's clean frame (pixels of the frame = displayed pixels x scale)
const drawing = {item: null, start: null, box: null};

function stopDrawing() {
  drawing.item = null; drawing.box = null;
  $("sighting-view").classList.remove("drawing");
  $("sighting-box").hidden = true;
  $("sighting-box-search").disabled = true;
  $("sighting-hint").textContent = "";
}

function startDrawing(r) {
  drawing.item = r.id; drawing.box = null;
  $("sighting-keyframe").src = `/api/items/${r.id}/frame`;
  $("sighting-view").classList.add("drawing");
  $("sighting-hint").textContent = "Drag a box around a person in the frame, then search with it.";
}

function framePoint(ev) {
  const img = $("sighting-keyframe"), rect = img.getBoundingClientRect();
  return {x: Math.max(0, Math.min(rect.width, ev.clientX - rect.left)),
          y: Math.max(0, Math.min(rect.height, ev.clientY - rect.top))};
}

function showBox(a, b) {
  const box = $("sighting-box");
  box.style.left = `${Math.min(a.x, b.x)}px`; box.style.top = `${Math.min(a.y, b.y)}px`;
  box.style.width = `${Math.abs(b.x - a.x)}px`; box.style.height = `${Math.abs(b.y - a.y)}px`;
  box.hidden = false;
}

function setUpDrawing() {
  const view = $("sighting-view");
  view.addEventListener("mousedown", (ev) => {
    if (drawing.item === null) return;
    ev.preventDefault(); drawing.start = framePoint(ev);
  });
  view.addEventListener("mousemove", (ev) => { if (drawing.start) showBox(drawing.start, framePoint(ev)); });
  window.addEventListener("mouseup", (ev) => {
    if (!drawing.start) return;
    const a = drawing.start, b = framePoint(ev), img = $("sighting-keyframe");
    drawing.start = null;
    const scale = img.naturalWidth / img.getBoundingClientRect().width;
    drawing.box = [a.x, a.y, b.x, b.y].map((v) => v * scale);
    showBox(a, b);
    $("sighting-box-search").disabled = false;
  });
  $("sighting-box-search").addEventListener("click", async () => {
    if (drawing.item === null || !drawing.box) return;
    try {
      const up = await api(`/api/items/${drawing.item}/frame/box`, {method: "POST",
        headers: {"content-type": "application/json"}, body: JSON.stringify({box: drawing.box})});
      if (!state.uploads.some((u) => u.id === up.id)) state.uploads.push(up);
      drawQueries(); stopDrawing(); $("sighting").hidden = true;
      runSearch();
    } catch (e) { status(e.message, true); }
  });
}

async function drawTimeline() {
  if (!state.search) { $("timeline").hidden = true; return; }
  const results = state.search.results.filter((r) => r.kind === "sighting");
  const marked = results.filter((r) => state.marks.get(r.id) === "match");
  const shown = marked.length ? marked : results.filter((r) => r.probability !== null && r.probability >= Number($("threshold").value));
  if (!shown.length) { $("timeline").hidden = true; return; }
  $("timeline-note").textContent = marked.length ? "the results marked as the person" : "the results above the threshold (no mark yet)";
  try {
    const res = await fetch(`/api/timeline?format=svg&items=${shown.map((r) => r.id).join(",")}`, {credentials: "same-origin"});
    const svg = new DOMParser().parseFromString(await res.text(), "image/svg+xml").documentElement;
    $("timeline-svg").replaceChildren(document.importNode(svg, true));
    for (const a of $("timeline-svg").querySelectorAll("a")) {
      const id = Number(a.getAttribute("href").split("-").pop());
      a.addEventListener("click", (ev) => { ev.preventDefault(); const r = results.find((x) => x.id === id); if (r) openSighting(r); });
    }
    $("timeline").hidden = false;
  } catch (e) { status(e.message, true); }
}

function evidenceChips(r) {
  return el("div", {}, ...(r.evidence || []).map((e) => chip(`${e.text} ${Math.round(100 * e.probability)} %`,
    e.status.replace(" ", "-") + (e.reliable ? "" : " weak"),
    `${e.status}` + (e.reliable ? "" : ` · unreliable for this model: weight ${e.weight}`))));
}

function describedCard(r) {
  const mark = state.marks.get(r.id);
  const meta = [r.camera ? `camera ${r.camera}` : null, r.time ? r.time.replace("T", " ") : null,
                r.pid ? `id ${r.pid}` : null, r.key].filter(Boolean).join(" · ");
  return el("div", {class: `result${mark ? " " + mark : ""}`, dataset: {id: r.id, rank: r.rank}},
    el("img", {src: r.thumbnail, alt: `result ${r.rank}`}),
    el("div", {class: "body"},
      el("div", {class: "top"}, el("span", {class: "rank"}, `#${r.rank}`),
        el("span", {class: "prob", title: "how well the image fits the description (see the API docs for the rule)"},
           `fit ${Math.round(100 * r.score)} %`)),
      el("div", {class: "meta"}, meta),
      el("p", {class: "line"}, r.reason),
      evidenceChips(r),
      el("div", {class: "marks"},
        markButton(r, "match", "✓ same person"), markButton(r, "not_match", "✗ not the person"),
        el("button", {title: "search with this image as the query; the description re-ranks the results",
                      onclick: () => runSearch(false, [r.id])}, "Search by this image"))));
}

function markButton(r, value, text) {
  const on = state.marks.get(r.id) === value;
  return el("button", {class: `mark ${value}${on ? " on" : ""}`, "aria-pressed": on ? "true" : "false",
    onclick: async () => {
      const next = state.marks.get(r.id) === value ? null : value;
      try {
        await api("/api/marks", {method: "POST", headers: {"content-type": "application/json"},
                                 body: JSON.stringify({search: state.search.search, item: r.id, mark: next})});
        if (next) state.marks.set(r.id, next); else state.marks.delete(r.id);
        drawResults();
      } catch (e) { status(e.message, true); }
    }}, text);
}

function openDetail(r) {
  state.detail = r;
  $("detail-title").textContent = `#${r.rank} · ${r.key}`;
  loadDetail();
  $("detail").hidden = false;
}

function loadDetail() {
  const r = state.detail;
  const maps = encodeURIComponent($("detail-maps").value);
  $("detail-frame").src = `/api/searches/${state.search.search}/items/${r.id}/explanation.html?maps=${maps}`;
}

function updateExport() {
  if (!state.search) return;
  const maps = $("export-maps").checked ? "default" : "none";
  $("export-html").href = `/api/searches/${state.search.search}/report.html?maps=${maps}`;
  $("export-json").href = `/api/searches/${state.search.search}/report.json`;
}

function clearQuery() {
  state.uploads = []; state.search = null; state.marks.clear();
  $("describe").value = ""; $("describe-notes").textContent = "";
  $("results").replaceChildren(); $("query-chips").replaceChildren(); $("export").hidden = true;
  drawQueries(); status("");
}

// -- wiring --

window.addEventListener("DOMContentLoaded", async () => {
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault(); drop.classList.remove("over");
    addFiles([...ev.dataTransfer.files]).then(() => state.uploads.length && runSearch());
  });
  drop.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") $("file").click(); });
  $("file").addEventListener("change", () => {
    addFiles([...$("file").files]).then(() => state.uploads.length && runSearch());
    $("file").value = "";
  });
  $("search").addEventListener("click", () => runSearch(false));
  $("describe").addEventListener("input", updateSearchButton);
  $("describe").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); if (description() || state.uploads.length) runSearch(); }
  });
  $("research").addEventListener("click", () => runSearch(true));
  $("clear").addEventListener("click", clearQuery);
  $("threshold").addEventListener("input", () => { $("threshold-value").textContent = Number($("threshold").value).toFixed(2); });
  $("sighting-close").addEventListener("click", () => { stopDrawing(); $("sighting").hidden = true; });
  setUpDrawing();
  $("export-maps").addEventListener("change", updateExport);
  $("detail-close").addEventListener("click", () => { $("detail").hidden = true; $("detail-frame").src = "about:blank"; });
  $("detail-maps").addEventListener("change", loadDetail);
  $("attr-find").addEventListener("input", () => {
    const q = $("attr-find").value.toLowerCase();
    for (const opt of document.querySelectorAll("#attributes .opt")) opt.hidden = q && !opt.dataset.text.includes(q);
  });
  try {
    state.info = await api("/api/info");
    drawFacets();
    drawDescribeChips();
    status("Drop a query image, or describe the person, to search.");
  } catch (e) {
    status(e.message, true);
  }
});
