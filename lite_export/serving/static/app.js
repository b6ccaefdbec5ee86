// The lite serve page: search items, build a history, get recommendations. Plain JS, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { history: [] }; // [{id, title}]
const keyInput = $("api-key");
keyInput.value = localStorage.getItem("lite-api-key") || "";
keyInput.addEventListener("change", () => {
  localStorage.setItem("lite-api-key", keyInput.value);
  loadModel();
  search();
});

async function api(path, body) {
  const headers = {};
  if (keyInput.value) headers["X-API-Key"] = keyInput.value;
  const init = { headers };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const t0 = performance.now();
  const res = await fetch(path, init);
  const ms = performance.now() - t0;
  let data = null;
  try { data = await res.json(); } catch (e) { data = { detail: res.statusText }; }
  if (!res.ok) throw new Error(`${res.status}: ${data.detail || res.statusText}`);
  return { data, ms, serverTiming: res.headers.get("Server-Timing") };
}

function showError(err) { $("error").textContent = err ? String(err.message || err) : ""; }

function li(item, onClick) {
  const el = document.createElement("li");
  el.dataset.id = item.id;
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = item.title || item.id;
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = item.id;
  el.append(title, id);
  el.addEventListener("click", onClick);
  return el;
}

async function loadModel() {
  try {
    const { data } = await api("/v1/model");
    $("model").textContent = `model ${data.id} · ${data.engine} · ${data.num_items} items · max history ${data.max_history}`;
    $("k").max = data.max_k;
  } catch (err) {
    $("model").textContent = "model: unavailable";
    showError(err);
  }
}

let searchTimer = null;
async function search() {
  const q = $("search").value;
  try {
    const { data } = await api(`/v1/items?q=${encodeURIComponent(q)}&limit=20`);
    const list = $("search-results");
    list.replaceChildren(...data.items.map((it) => li(it, () => addToHistory(it))));
    showError(null);
  } catch (err) { showError(err); }
}

function renderHistory() {
  $("history").replaceChildren(
    ...state.history.map((it, i) => li(it, () => { state.history.splice(i, 1); renderHistory(); recommend(); }))
  );
}

function addToHistory(item) {
  state.history.push({ id: item.id, title: item.title });
  renderHistory();
  recommend();
}

let seq = 0;
async function recommend() {
  const mine = ++seq;
  const body = {
    history: state.history.map((it) => it.id),
    k: parseInt($("k").value, 10) || 10,
    exclude_seen: $("exclude-seen").checked,
  };
  try {
    const { data, ms, serverTiming } = await api("/v1/recommend", body);
    if (mine !== seq) return; // a newer request is on its way
    // an empty history gets the most popular items: their scores are training counts
    const popularity = data.score_kind === "popularity";
    $("score-head").textContent = popularity ? "popularity" : "score";
    $("score-head").title = popularity
      ? "empty history: the most popular items, scored by their interaction count in the training data"
      : "the model's score (higher is better)";
    const rows = data.items.map((it, i) => {
      const tr = document.createElement("tr");
      tr.dataset.id = it.id;
      const score = popularity ? String(Math.round(it.score)) : it.score.toFixed(4);
      for (const [text, cls] of [[i + 1, "num"], [it.title, "title"], [it.id, "id"], [score, "num score"]]) {
        const td = document.createElement("td");
        td.className = cls;
        td.textContent = text;
        tr.append(td);
      }
      tr.addEventListener("click", () => addToHistory(it));
      return tr;
    });
    $("recs").tBodies[0].replaceChildren(...rows);
    const server = /dur=([\d.]+)/.exec(serverTiming || "");
    $("latency").textContent = `${ms.toFixed(1)} ms round trip` + (server ? ` · ${parseFloat(server[1]).toFixed(1)} ms in server` : "");
    $("latency").dataset.ms = ms.toFixed(3);
    $("notes").textContent = data.warnings.join(" · ");
    $("recs").dataset.model = data.model;
    showError(null);
  } catch (err) { if (mine === seq) showError(err); }
}

$("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(search, 150); });
$("recommend").addEventListener("click", recommend);
$("clear").addEventListener("click", () => { state.history = []; renderHistory(); recommend(); });
$("k").addEventListener("change", recommend);
$("exclude-seen").addEventListener("change", recommend);

loadModel();
search();
