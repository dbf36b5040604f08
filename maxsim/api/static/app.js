// maxsim search page: plain JS, no build step. Talks to the same server's JSON API.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, selected: { search: null, rerank: null }, documents: {} };

// ---- API ---------------------------------------------------------------------------------
function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function api(method, path, body) {
  const res = await fetch(path, { method, headers: headers(), body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) {
    let msg = res.status + " " + res.statusText;
    if (data && typeof data.message === "string") msg = data.message;
    else if (data && typeof data.detail === "string") msg = data.detail;
    throw new Error(msg);
  }
  return data;
}

function setStatus(which, text, isError) {
  const el = $(which + "-status");
  el.textContent = text;
  el.classList.toggle("error", !!isError);
}

// ---- tokens and heat ---------------------------------------------------------------------
function tokenText(tok) {
  return tok.replace(/\u2581/g, " ");
}

function heat(t) {
  // 0 -> pale yellow, 1 -> strong red
  const hue = 55 - 55 * t, light = 88 - 33 * t;
  return `hsl(${hue.toFixed(0)}, 95%, ${light.toFixed(0)}%)`;
}

// Per document position: the largest similarity of the query tokens whose maximum it gives.
function docHeat(ex) {
  const best = new Map();
  for (const m of ex.matches) {
    if (m.document_token < 0) continue;
    const prev = best.get(m.document_token);
    if (prev === undefined || m.similarity > prev) best.set(m.document_token, m.similarity);
  }
  return best;
}

function renderDoc(ex) {
  const div = document.createElement("div");
  div.className = "doc";
  let first = true;
  ex.document_tokens.forEach((tok, pos) => {
    if (ex.document_token_kinds[pos] === "special") return;
    const span = document.createElement("span");
    span.className = "tok";
    span.dataset.pos = String(pos);
    let text = tokenText(tok);
    if (first) { text = text.replace(/^ /, ""); first = false; }
    span.textContent = text;
    div.appendChild(span);
  });
  return div;
}

function renderQueryTokens(which, ex, card) {
  const box = $(which + "-query-tokens");
  box.replaceChildren();
  if (!ex) return;
  ex.query_tokens.forEach((tok, i) => {
    const kind = ex.query_token_kinds[i];
    if (kind === "special") return;
    const m = ex.matches[i];
    const chip = document.createElement("span");
    chip.className = "qtok" + (kind === "expansion" ? " expansion" : "");
    chip.dataset.q = String(i);
    chip.textContent = kind === "expansion" ? "·" : tokenText(tok).trim() || tok;
    const target = m.document_token >= 0 ? tokenText(ex.document_tokens[m.document_token]).trim() : "(none)";
    chip.title = `${kind === "expansion" ? "query expansion token" : tok} → ${target}  (similarity ${m.similarity.toFixed(3)})`;
    chip.style.background = heat(Math.max(0, Math.min(1, m.similarity)));
    const focus = (on) => {
      chip.classList.toggle("focus", on);
      const span = card.querySelector(`.tok[data-pos="${m.document_token}"]`);
      if (span) span.classList.toggle("focus", on);
    };
    chip.addEventListener("mouseenter", () => focus(true));
    chip.addEventListener("mouseleave", () => focus(false));
    box.appendChild(chip);
  });
}

function clearHeat(card) {
  card.classList.remove("selected");
  card.querySelectorAll(".tok.hit").forEach((s) => { s.classList.remove("hit"); s.style.background = ""; s.title = ""; });
}

function select(which, card) {
  const prev = state.selected[which];
  if (prev === card) return;
  if (prev) clearHeat(prev);
  state.selected[which] = card;
  const ex = card._explanation;
  card.classList.add("selected");
  if (!ex) { renderQueryTokens(which, null, card); return; }
  const best = docHeat(ex);
  const values = [...best.values()];
  const lo = Math.min(...values), hi = Math.max(...values);
  for (const [pos, v] of best) {
    const span = card.querySelector(`.tok[data-pos="${pos}"]`);
    if (!span) continue;
    const t = hi > lo ? (v - lo) / (hi - lo) : 1;
    span.classList.add("hit");
    span.style.background = heat(t);
    span.title = `best match of a query token (similarity ${v.toFixed(3)})`;
  }
  renderQueryTokens(which, ex, card);
}

function renderResults(which, items) {
  const list = $(which + "-results");
  list.replaceChildren();
  state.selected[which] = null;
  renderQueryTokens(which, null, null);
  for (const it of items) {
    const li = document.createElement("li");
    li.className = "result";
    const meta = document.createElement("div");
    meta.className = "meta";
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = it.score.toFixed(3);
    meta.appendChild(score);
    if (it.label) {
      const label = document.createElement("span");
      label.textContent = it.label;
      meta.appendChild(label);
    }
    if (it.metadata) {
      const md = document.createElement("span");
      md.textContent = JSON.stringify(it.metadata);
      meta.appendChild(md);
    }
    li.appendChild(meta);
    if (it.explanation) {
      li.appendChild(renderDoc(it.explanation));
    } else {
      const doc = document.createElement("div");
      doc.className = "doc";
      doc.textContent = it.text || "";
      li.appendChild(doc);
    }
    li._explanation = it.explanation || null;
    li.addEventListener("mouseenter", () => select(which, li));
    li.addEventListener("click", () => select(which, li));
    list.appendChild(li);
  }
  if (list.firstChild) select(which, list.firstChild);
}

// ---- search tab --------------------------------------------------------------------------
async function loadIndexes() {
  const sel = $("index-select");
  try {
    const data = await api("GET", "/v1/indexes");
    sel.replaceChildren();
    state.documents = {};
    for (const ix of data.data) {
      const opt = document.createElement("option");
      opt.value = ix.name;
      opt.textContent = `${ix.name} (${ix.documents} docs)`;
      sel.appendChild(opt);
      state.documents[ix.name] = ix.documents;
    }
    if (!data.data.length) setStatus("search", "No index is served. Start the server with --index NAME=PATH or create one with POST /v1/indexes.");
    else noteIfEmpty();
  } catch (e) {
    setStatus("search", "Could not list indexes: " + e.message + (/401/.test(e.message) || /key/i.test(e.message) ? " — enter the API key above." : ""), true);
  }
}

function emptyMessage(name) {
  return `The index "${name}" is empty: add documents first (POST /v1/indexes/${name}/documents, or maxsim index add).`;
}

// Say so when the selected index holds no document (a search there can only come back empty).
function noteIfEmpty() {
  const name = $("index-select").value;
  if (name && state.documents[name] === 0) setStatus("search", emptyMessage(name));
  else setStatus("search", "");
}

async function runSearch(ev) {
  ev.preventDefault();
  const name = $("index-select").value;
  const query = $("search-query").value;
  const k = parseInt($("search-k").value, 10) || 10;
  if (!name) { setStatus("search", "Pick an index first.", true); return; }
  setStatus("search", "Searching…");
  const t0 = performance.now();
  try {
    const data = await api("POST", `/v1/indexes/${encodeURIComponent(name)}/search`, { query, k, explain: true, hybrid: $("search-hybrid").checked });
    renderResults("search", data.results.map((h) => ({
      score: h.score, label: h.id, metadata: h.metadata, text: h.text, explanation: h.explanation,
    })));
    const ms = (performance.now() - t0).toFixed(0);
    if (!data.results.length) {
      // no hit: tell an empty index (documents may have been added or deleted since the list was read)
      const info = await api("GET", `/v1/indexes/${encodeURIComponent(name)}`);
      state.documents[name] = info.documents;
      setStatus("search", info.documents === 0 ? emptyMessage(name)
        : `No document matched (the index holds ${info.documents}).`);
      return;
    }
    setStatus("search", `${data.results.length} result(s) in ${ms} ms`);
  } catch (e) {
    setStatus("search", e.message, true);
  }
}

// ---- rerank tab --------------------------------------------------------------------------
function splitPassages(text) {
  const parts = /\n\s*\n/.test(text) ? text.split(/\n\s*\n/) : text.split("\n");
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

async function runRerank(ev) {
  ev.preventDefault();
  const query = $("rerank-query").value;
  const documents = splitPassages($("rerank-docs").value);
  if (!documents.length) { setStatus("rerank", "Paste at least one passage.", true); return; }
  const topN = parseInt($("rerank-top").value, 10) || documents.length;
  setStatus("rerank", "Reranking…");
  try {
    const ranked = await api("POST", "/v1/rerank", { model: state.model || "jina-colbert-v2", query, documents, top_n: topN });
    const texts = ranked.results.map((r) => documents[r.index]);
    const ex = await api("POST", "/v1/explain", { query, documents: texts });
    renderResults("rerank", ranked.results.map((r, i) => ({
      score: r.relevance_score, label: `passage ${r.index + 1}`, text: texts[i], explanation: ex.results[i],
    })));
    setStatus("rerank", `${ranked.results.length} of ${documents.length} passage(s), ${ranked.usage.total_tokens} tokens`);
  } catch (e) {
    setStatus("rerank", e.message, true);
  }
}

// ---- set-up ------------------------------------------------------------------------------
function showTab(btn) {
  document.querySelectorAll(".tabs button").forEach((b) => {
    const on = b === btn;
    b.setAttribute("aria-selected", String(on));
    $(b.dataset.panel).hidden = !on;
  });
}

async function init() {
  const saved = sessionStorage.getItem("maxsim-api-key");
  if (saved) $("api-key").value = saved;
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem("maxsim-api-key", $("api-key").value.trim());
    loadIndexes();
  });
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => showTab(b)));
  $("search-form").addEventListener("submit", runSearch);
  $("index-select").addEventListener("change", noteIfEmpty);
  $("rerank-form").addEventListener("submit", runRerank);
  try {
    const h = await api("GET", "/health");
    state.model = h.model;
    $("model-name").textContent = `${h.model} · dims ${h.dimensions.join("/")}`;
  } catch (e) { /* shown by the index list */ }
  await loadIndexes();
  document.body.dataset.ready = "1";
}

init();
