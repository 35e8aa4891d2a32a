// kb-assistant web chat: plain JavaScript, no build step.
// Streams answers from POST /v1/ask (server-sent events read with fetch + ReadableStream).
"use strict";

const $ = (sel) => document.querySelector(sel);
const messages = $("#messages");
const form = $("#composer");
const input = $("#question");
const sendBtn = $("#send");
const history = []; // [{role, content}] of earlier turns (follow-up questions use them)
let authRequired = false;

function apiKey() { return localStorage.getItem("kb-api-key") || ""; }

function headers(extra = {}) {
  const h = { ...extra };
  if (apiKey()) h["Authorization"] = "Bearer " + apiKey();
  return h;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function scrollDown() { messages.scrollTop = messages.scrollHeight; }

function fileType(name) {
  const m = /\.([A-Za-z0-9]+)$/.exec(name || "");
  return m ? m[1].toLowerCase() : "?";
}

// ---------------------------------------------------------------- answers
function renderText(node, text, card) {
  // the answer text with its [n] markers turned into buttons that open source n
  node.textContent = "";
  const parts = text.split(/(\[\d+\])/);
  for (const part of parts) {
    const m = /^\[(\d+)\]$/.exec(part);
    if (m) {
      const b = el("button", "cite", m[1]);
      b.type = "button";
      b.title = "Show source " + m[1];
      b.addEventListener("click", () => openSource(card, Number(m[1])));
      node.appendChild(b);
    } else {
      node.appendChild(document.createTextNode(part));
    }
  }
}

function openSource(card, n) {
  const src = card.querySelector(`.source[data-n="${n}"]`);
  if (!src) return;
  src.classList.add("open", "flash");
  src.scrollIntoView({ behavior: "smooth", block: "nearest" });
  setTimeout(() => src.classList.remove("flash"), 900);
}

function sourceItem(s) {
  const item = el("div", "source");
  item.dataset.n = s.n;
  const head = el("button", "source-head");
  head.type = "button";
  head.appendChild(el("span", "source-n", "[" + s.n + "]"));
  const file = el("span", "source-file", s.file);
  file.title = s.source;
  head.appendChild(file);
  if (s.page) head.appendChild(el("span", "source-page", "p. " + s.page));
  head.appendChild(el("span", "score", "relevance " + Number(s.score).toFixed(2)));
  head.appendChild(el("span", "chev", "›"));
  head.addEventListener("click", () => item.classList.toggle("open"));
  item.appendChild(head);
  // hard line wraps of PDFs become spaces; blank lines (paragraphs) are kept
  item.appendChild(el("div", "source-text", s.text.replace(/([^\n])\n(?!\n)/g, "$1 ")));
  return item;
}

function renderSources(card, result) {
  if (!result.sources || !result.sources.length) return;
  if (result.unknown) {
    // passages below the relevance threshold: available, but folded away
    const box = el("details", "sources nearest");
    box.appendChild(el("summary", "sources-title", `Closest passages (${result.sources.length}), not relevant enough`));
    for (const s of result.sources) box.appendChild(sourceItem(s));
    card.appendChild(box);
    return;
  }
  const box = el("div", "sources");
  box.appendChild(el("div", "sources-title", "Sources"));
  const cited = new Set(result.citations || []);
  for (const s of result.sources) {
    if (cited.size && !cited.has(s.n)) continue;
    box.appendChild(sourceItem(s));
  }
  card.appendChild(box);
}

function addUser(text) {
  $("#empty")?.remove();
  const row = el("div", "msg user");
  row.appendChild(el("div", "bubble", text));
  messages.appendChild(row);
}

function addAssistant() {
  const row = el("div", "msg assistant");
  row.dataset.state = "waiting";
  row.appendChild(el("div", "avatar", "kb"));
  const card = el("div", "card");
  const badges = el("div", "badges");
  badges.hidden = true;
  card.appendChild(badges);
  card.appendChild(el("div", "answer-text"));
  row.appendChild(card);
  messages.appendChild(row);
  scrollDown();
  return row;
}

function badge(row, cls, text) {
  const badges = row.querySelector(".badges");
  badges.hidden = false;
  badges.appendChild(el("span", "badge " + cls, text));
}

function finish(row, result) {
  const card = row.querySelector(".card");
  renderText(row.querySelector(".answer-text"), result.text, card);
  if (result.unknown) {
    row.classList.add("unknown");
    badge(row, "badge-unknown", result.mode === "refused" ? "Refused" : "Not found in your documents");
  }
  if (!result.unknown && result.supported === false) {
    badge(row, "badge-check", "Check the sources: weakly supported");
  }
  renderSources(card, result);
  const t = result.timings || {};
  const bits = [];
  if (t.total !== undefined) bits.push(t.total < 1000 ? Math.round(t.total) + " ms" : (t.total / 1000).toFixed(1) + " s");
  if (result.mode) bits.push(result.mode);
  if (result.cached) bits.push("cached");
  card.appendChild(el("div", "meta", bits.join(" · ")));
  row.dataset.state = "done";
  row.dataset.unknown = String(!!result.unknown);
  scrollDown();
}

function fail(row, message) {
  badge(row, "badge-error", "Error");
  row.querySelector(".answer-text").textContent = message;
  row.dataset.state = "error";
}

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) yield { event, data: JSON.parse(data) };
    }
  }
}

async function ask(question) {
  addUser(question);
  const row = addAssistant();
  sendBtn.disabled = true;
  let text = "";
  try {
    const res = await fetch("/v1/ask", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ question, stream: true, history: history.slice(-6) }),
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      if (res.status === 401) showKeyPanel();
      throw new Error((body.error && body.error.message) || body.detail || res.statusText);
    }
    for await (const { event, data } of sseEvents(res)) {
      if (event === "queued") {
        if (row.dataset.state === "waiting") row.dataset.state = "queued";
      } else if (event === "delta") {
        text += data.text;
        row.dataset.state = "streaming";
        renderText(row.querySelector(".answer-text"), text, row.querySelector(".card"));
        scrollDown();
      } else if (event === "done") {
        finish(row, data);
        history.push({ role: "user", content: question }, { role: "assistant", content: data.text });
      } else if (event === "error") {
        throw new Error(data.message);
      }
    }
    if (row.dataset.state !== "done") throw new Error("the answer stream ended early");
  } catch (err) {
    fail(row, String(err.message || err));
  } finally {
    sendBtn.disabled = false;
    input.focus();
  }
}

// ---------------------------------------------------------------- documents & upload
async function loadDocuments() {
  const res = await fetch("/v1/documents", { headers: headers() });
  if (!res.ok) { if (res.status === 401) showKeyPanel(); return; }
  const { documents } = await res.json();
  const list = $("#doc-list");
  list.textContent = "";
  for (const d of documents) {
    const li = el("li");
    li.appendChild(el("span", "doc-type", fileType(d.file)));
    const name = el("span", "doc-name", d.file);
    name.title = d.path + " · " + d.n_chunks + " chunks";
    li.appendChild(name);
    if (d.groups && d.groups.length) li.appendChild(el("span", "doc-lock", "🔒 " + d.groups.join(", ")));
    list.appendChild(li);
  }
  $("#doc-count").textContent = documents.length;
}

async function upload(files) {
  if (!files.length) return;
  const status = $("#upload-status");
  status.className = "upload-status";
  status.textContent = `Uploading ${files.length} file(s)…`;
  const body = new FormData();
  for (const f of files) body.append("files", f, f.name);
  try {
    const res = await fetch("/v1/documents", { method: "POST", headers: headers(), body });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error((data.error && data.error.message) || res.statusText);
    const r = data.report;
    status.className = "upload-status ok";
    status.textContent = `Indexed: ${r.added.length} added, ${r.updated.length} updated, ` +
      `${r.unchanged.length} unchanged` + (r.failed.length ? `, ${r.failed.length} failed` : "");
    loadDocuments();
  } catch (err) {
    status.className = "upload-status err";
    status.textContent = "Upload failed: " + (err.message || err);
  }
}

// ---------------------------------------------------------------- health & key
function showKeyPanel() { $("#key-panel").hidden = false; }

async function health() {
  try {
    const res = await fetch("/healthz");
    const h = await res.json();
    authRequired = h.auth;
    if (authRequired) showKeyPanel();
    const busy = h.queue.running > 0;
    $("#health-dot").className = "dot " + (busy ? "busy" : "up");
    $("#health-text").textContent = `v${h.version} · ` +
      (busy ? `generating, ${h.queue.waiting} waiting` : "ready");
  } catch {
    $("#health-dot").className = "dot";
    $("#health-text").textContent = "server unreachable";
  }
}

// ---------------------------------------------------------------- wiring
form.addEventListener("submit", (e) => {
  e.preventDefault();
  const q = input.value.trim();
  if (!q || sendBtn.disabled) return;
  input.value = "";
  input.style.height = "";
  ask(q);
});
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
});
input.addEventListener("input", () => {
  input.style.height = "auto";
  input.style.height = Math.min(input.scrollHeight, 180) + "px";
});
for (const b of document.querySelectorAll(".suggestion")) {
  b.addEventListener("click", () => { input.value = b.textContent; form.requestSubmit(); });
}
const dz = $("#dropzone");
$("#file-input").addEventListener("change", (e) => { upload([...e.target.files]); e.target.value = ""; });
dz.addEventListener("dragover", (e) => { e.preventDefault(); dz.classList.add("drag"); });
dz.addEventListener("dragleave", () => dz.classList.remove("drag"));
dz.addEventListener("drop", (e) => { e.preventDefault(); dz.classList.remove("drag"); upload([...e.dataTransfer.files]); });
const keyInput = $("#api-key");
keyInput.value = apiKey();
keyInput.addEventListener("change", () => { localStorage.setItem("kb-api-key", keyInput.value.trim()); loadDocuments(); });

health().then(loadDocuments);
setInterval(health, 5000);
input.focus();
