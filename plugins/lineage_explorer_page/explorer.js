// The Lineage page: draws what the lineage explorer's API (Marquez's shapes) returns for the
// logged-in user. No data of its own; every request carries the UI's _token cookie.
"use strict";

const API = document.querySelector('meta[name="lineage-api"]').content;
const DAG_ID = new URLSearchParams(location.search).get("dag_id");
const $ = (id) => document.getElementById(id);
const seg = encodeURIComponent;

cytoscape.use(cytoscapeDagre);
const cy = cytoscape({
  container: $("graph"),
  wheelSensitivity: 0.3,
  style: [
    { selector: "node", style: { label: "data(label)", "text-wrap": "wrap", "text-max-width": 170, "font-size": 12,
      "text-valign": "center", "text-halign": "center", width: 180, height: 44, "border-width": 1 } },
    { selector: "node.job", style: { shape: "round-rectangle", "background-color": "#ebf4ff", "border-color": "#2b6cb0" } },
    { selector: "node.dataset", style: { shape: "barrel", "background-color": "#f0fff4", "border-color": "#2f855a" } },
    { selector: "node.failed", style: { "border-color": "#c53030", "border-width": 2 } },
    { selector: "node:selected", style: { "border-width": 3, "border-color": "#dd6b20" } },
    { selector: "edge", style: { width: 1.5, "curve-style": "bezier", "target-arrow-shape": "triangle",
      "line-color": "#a0aec0", "target-arrow-color": "#a0aec0" } },
  ],
});
window.lineageGraph = cy; // the browser test reads what is drawn from here

async function api(path) {
  const resp = await fetch(API + path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (resp.status === 401) throw new Error("Not logged in to Airflow: log in, then reload this page.");
  if (!resp.ok) throw new Error(`${path.split("?")[0]} answered ${resp.status}`);
  return resp.json();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) if (c != null) node.append(c);
  return node;
}

// A link to a page of the Airflow UI. The UI shows this page in an iframe sandboxed without
// allow-top-navigation, so a target=_top link is blocked; the frame is same-origin, so the
// link is followed as one of the UI's own document (standalone, it is an ordinary link).
function uiLink(href, text) {
  const a = el("a", { href, target: "_top" }, text);
  a.addEventListener("click", (evt) => {
    if (window.top === window) return;
    evt.preventDefault();
    const top = window.top.document;
    const link = top.createElement("a");
    link.href = href;
    top.body.append(link);
    link.click();
    link.remove();
  });
  return a;
}

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

const nodeId = (type, ns, name) => `${type}:${ns}:${name}`;
const jobLabel = (name) => name.replace(".", "\n");
const datasetLabel = (ns, name) => `${name}\n${ns}`;

// nodes: [{id, type: "job"|"dataset", ns, name, data}], edges: [[from, to]]
function draw(nodes, edges, focus) {
  cy.elements().remove();
  cy.add(nodes.map((n) => ({
    group: "nodes",
    data: { id: n.id, type: n.type, ns: n.ns, name: n.name, payload: n.data || null,
            label: n.type === "job" ? jobLabel(n.name) : datasetLabel(n.ns, n.name) },
    classes: [n.type, n.data?.latestRun?.state === "FAILED" ? "failed" : ""].join(" "),
  })));
  const ids = new Set(nodes.map((n) => n.id));
  const unique = new Set(edges.filter(([a, b]) => ids.has(a) && ids.has(b)).map(([a, b]) => `${a}\u0000${b}`));
  cy.add([...unique].map((key) => {
    const [source, target] = key.split("\u0000");
    return { group: "edges", data: { id: key, source, target } };
  }));
  cy.layout({ name: "dagre", rankDir: "LR", nodeSep: 16, rankSep: 50 }).run();
  cy.fit(undefined, 24);
  if (cy.zoom() > 1.4) { cy.zoom(1.4); cy.center(); }
  const jobs = nodes.filter((n) => n.type === "job").length;
  status(`${jobs} job${jobs === 1 ? "" : "s"}, ${nodes.length - jobs} dataset${nodes.length - jobs === 1 ? "" : "s"}` +
         (DAG_ID ? ` of DAG ${DAG_ID}` : "") + (focus ? ` around ${focus}` : ""));
  if (focus) cy.getElementById(focus).select();
}

// Every job the user may see (or the DAG's), with the datasets it reads and writes.
async function overview() {
  status("Loading…");
  const { jobs } = await api("/jobs?limit=1000");
  let shown = jobs.filter((j) => !DAG_ID || j.dagId === DAG_ID);
  const withIo = shown.filter((j) => j.inputs.length || j.outputs.length);
  if (withIo.length) shown = withIo; // DAG-level jobs carry no datasets: keep the graph to the tasks
  const nodes = new Map(), edges = [];
  for (const j of shown) {
    const jid = nodeId("job", j.namespace, j.name);
    nodes.set(jid, { id: jid, type: "job", ns: j.namespace, name: j.name, data: j });
    for (const [list, dir] of [[j.inputs, "in"], [j.outputs, "out"]]) {
      for (const d of list) {
        const did = nodeId("dataset", d.namespace, d.name);
        if (!nodes.has(did)) nodes.set(did, { id: did, type: "dataset", ns: d.namespace, name: d.name });
        edges.push(dir === "in" ? [did, jid] : [jid, did]);
      }
    }
  }
  draw([...nodes.values()], edges);
}

// Marquez's lineage graph around one node, to the chosen depth.
async function lineageOf(id) {
  status("Loading…");
  const { graph } = await api(`/lineage?nodeId=${seg(id)}&depth=${$("depth").value}`);
  const nodes = graph.map((n) => ({ id: n.id, type: n.type.toLowerCase(), ns: n.data.namespace, name: n.data.name,
                                    data: n.data }));
  const edges = graph.flatMap((n) => n.outEdges.map((e) => [e.origin, e.destination]));
  draw(nodes, edges, id);
}

function airflowRunId(run) {
  const f = run.facets || {};
  return f.airflow?.dagRun?.run_id || f.airflowDagRun?.dagRun?.run_id || null;
}

async function showJob(d) {
  const job = d.payload || await api(`/namespaces/${seg(d.ns)}/jobs/${seg(d.name)}`);
  const panel = $("panel");
  const dagLink = job.dagId ? uiLink(`/dags/${seg(job.dagId)}`, `DAG ${job.dagId}`) : null;
  panel.replaceChildren(el("h2", {}, job.name), el("div", { class: "meta" }, `job · ${job.namespace}`),
                        el("p", {}, dagLink, job.team ? ` · team ${job.team}` : ""));
  const sql = job.facets?.sql?.query;
  if (sql) panel.append(el("h3", {}, "SQL"), el("pre", {}, sql));
  const { runs } = await api(`/namespaces/${seg(job.namespace)}/jobs/${seg(job.name)}/runs?limit=5`);
  const rows = runs.map((r) => {
    const runId = airflowRunId(r);
    const when = (r.startedAt || r.createdAt || "").replace("T", " ").slice(0, 19);
    const task = job.dagId && job.name.startsWith(`${job.dagId}.`) ? job.name.slice(job.dagId.length + 1) : null;
    const href = `/dags/${seg(job.dagId)}/runs/${seg(runId)}` + (task ? `/tasks/${seg(task)}` : "");
    const link = runId && job.dagId ? uiLink(href, when) : when;
    return el("tr", {}, el("td", {}, link), el("td", { class: `state-${r.state}` }, r.state),
              el("td", {}, r.durationMs == null ? "" : `${(r.durationMs / 1000).toFixed(1)} s`));
  });
  panel.append(el("h3", {}, "Last runs"),
               rows.length ? el("table", {}, el("tr", {}, el("th", {}, "started"), el("th", {}, "state"),
                                                el("th", {}, "took")), ...rows) : el("p", { class: "hint" }, "No runs."));
  focusButton(panel, nodeId("job", job.namespace, job.name));
}

async function showDataset(d) {
  const ds = d.payload || await api(`/namespaces/${seg(d.ns)}/datasets/${seg(d.name)}`);
  const panel = $("panel");
  panel.replaceChildren(el("h2", {}, ds.name), el("div", { class: "meta" }, `dataset · ${ds.namespace}`));
  if (ds.fields?.length) {
    panel.append(el("h3", {}, "Schema"), el("table", {}, el("tr", {}, el("th", {}, "column"), el("th", {}, "type")),
      ...ds.fields.map((f) => el("tr", {}, el("td", {}, f.name), el("td", {}, f.type || "")))));
  }
  if (ds.updatedAt) panel.append(el("p", { class: "meta" }, `last written ${ds.updatedAt.replace("T", " ").slice(0, 19)}`));
  focusButton(panel, nodeId("dataset", ds.namespace, ds.name));
}

function focusButton(panel, id) {
  const b = el("button", { type: "button" }, "Lineage from here");
  b.addEventListener("click", () => lineageOf(id).catch((e) => status(e.message, true)));
  panel.append(b);
}

cy.on("tap", "node", (evt) => {
  const d = evt.target.data();
  (d.type === "job" ? showJob(d) : showDataset(d)).catch((e) => status(e.message, true));
});

$("search-form").addEventListener("submit", async (evt) => {
  evt.preventDefault();
  const q = $("search").value.trim();
  const list = $("results");
  if (!q) { list.hidden = true; return; }
  try {
    const { results } = await api(`/search?q=${seg(q)}&limit=20`);
    list.replaceChildren(...results.map((r) => {
      const b = el("button", { type: "button" }, `${r.type.toLowerCase()} ${r.name} (${r.namespace})`);
      b.addEventListener("click", () => lineageOf(r.nodeId).catch((e) => status(e.message, true)));
      return el("li", {}, b);
    }));
    if (!results.length) list.replaceChildren(el("li", { class: "hint" }, `Nothing matches "${q}".`));
    list.hidden = false;
  } catch (e) { status(e.message, true); }
});

for (const n of [1, 2, 3, 4, 5, 6, 8, 10]) $("depth").append(el("option", n === 2 ? { selected: "" } : {}, String(n)));
$("depth").addEventListener("change", () => {
  const sel = cy.$("node:selected");
  if (sel.length) lineageOf(sel.id()).catch((e) => status(e.message, true));
});
$("overview").textContent = DAG_ID ? `All jobs of ${DAG_ID}` : "All jobs";
$("overview").addEventListener("click", () => overview().catch((e) => status(e.message, true)));
overview().catch((e) => status(e.message, true));
