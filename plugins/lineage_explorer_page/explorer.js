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
    { selector: "node", style: { label: "data(label)", "text-wrap": "wrap", "text-max-width": 400, "font-size": 13,
      "text-valign": "center", "text-halign": "center", width: "data(w)", height: 38, "border-width": 1 } },
    { selector: "node.domain", style: { shape: "round-rectangle", "background-color": "#f7fafc", "border-color": "#cbd5e0",
      "text-valign": "top", "text-halign": "center", "font-size": 15, "font-weight": 600, padding: 10, color: "#2d3748" } },
    { selector: "node.dag", style: { shape: "round-rectangle", "background-color": "#ebf4ff", "border-color": "#2b6cb0",
      "border-width": 2, "font-weight": 600, height: 40 } },
    { selector: "node.dag-open", style: { shape: "round-rectangle", "background-color": "#fff", "border-color": "#2b6cb0",
      "border-style": "dashed", "text-valign": "top", "font-weight": 600, padding: 10 } },
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
const READABLE_ZOOM = 0.8;
// Labels fit their boxes: a node is as wide as its longest label line (at 13 px), and a
// dataset's label is its own name (table, file, resource) over where it lives, each clipped in
// the middle; the full name is in the panel and in the list's tooltip.
const MAX_LINE = 34; // characters of a label line
const clip = (s, n = MAX_LINE) => (s.length <= n ? s : `${s.slice(0, Math.ceil((n - 1) / 2))}…${s.slice(s.length - Math.floor((n - 1) / 2))}`);
const jobLabel = (name) => name.split(".").length > 1
  ? `${clip(name.slice(0, name.indexOf(".")))}\n${clip(name.slice(name.indexOf(".") + 1))}` : clip(name);
function datasetParts(ns, name) {
  const host = ns.replace(/^[a-z0-9+.-]+:\/\//i, "").replace(/@$/, "") || ns;
  const table = name.match(/^([^./]+\.[^./]+)\.([^/]+)$/); // database.schema.table
  if (table && ns.startsWith("postgres")) return [table[2], table[1]];
  const path = name.split("/").filter(Boolean);
  if (ns.startsWith("file") && path.length > 1) return [path[path.length - 1], path[path.length - 2]];
  return [name, host];
}
const datasetLabel = (ns, name) => datasetParts(ns, name).map((s) => clip(s)).join("\n");
const datasetShort = (ns, name) => datasetParts(ns, name).join(" · ");
// the box for a label: about 7.6 px per character of bold 13 px text, at least 170 px
const boxWidth = (label, min = 170) => Math.max(min, Math.ceil(Math.max(...label.split("\n").map((l) => l.length)) * 7.6) + 20);

// The whole graph in view, but labels stay readable without zooming: never below READABLE_ZOOM
// (13 px text at 0.8 = 10.4 px); a larger graph starts at its top left corner and is panned.
function fitReadable() {
  cy.fit(undefined, 24);
  if (cy.zoom() > 1.4) { cy.zoom(1.4); cy.center(); }
  if (cy.zoom() < READABLE_ZOOM) {
    cy.zoom(READABLE_ZOOM);
    const bb = cy.elements().boundingBox();
    cy.pan({ x: 24 - bb.x1 * READABLE_ZOOM, y: 24 - bb.y1 * READABLE_ZOOM });
  }
}

// nodes: [{id, type: "job"|"dataset", ns, name, data}], edges: [[from, to]]
function draw(nodes, edges, focus) {
  cy.elements().remove();
  cy.add(nodes.map((n) => {
    const label = n.label || (n.type === "job" ? jobLabel(n.name) : datasetLabel(n.ns, n.name));
    const w = boxWidth(label, n.type === "dag" ? 200 : 170);
    return {
      group: "nodes",
      data: { id: n.id, type: n.type, ns: n.ns, name: n.name, payload: n.type === "job" || n.type === "dataset" ? n.data || null : null,
              dag: n.type === "dag" || n.type === "dag-open" ? n.name : undefined,
              ...(n.parent ? { parent: n.parent } : {}),
              label, w },
      classes: [n.type, n.failed || n.data?.latestRun?.state === "FAILED" ? "failed" : ""].join(" "),
    };
  }));
  const ids = new Set(nodes.map((n) => n.id));
  const unique = new Set(edges.filter(([a, b]) => ids.has(a) && ids.has(b)).map(([a, b]) => `${a}\u0000${b}`));
  cy.add([...unique].map((key) => {
    const [source, target] = key.split("\u0000");
    return { group: "edges", data: { id: key, source, target } };
  }));
  if (cy.nodes(".domain").length) packDomains(); else layoutWhole();
  fitReadable();
  const jobs = nodes.filter((n) => n.type === "job").length;
  status(`${jobs} job${jobs === 1 ? "" : "s"}, ${nodes.length - jobs} dataset${nodes.length - jobs === 1 ? "" : "s"}` +
         (DAG_ID ? ` of DAG ${DAG_ID}` : "") + (focus ? ` around ${focus}` : ""));
  if (focus) cy.getElementById(focus).select();
}

// The longest edge of a collection (model px, between node centres).
const longestEdge = (edges) => Math.max(0, ...edges.map((e) => {
  const a = e.source().position(), b = e.target().position();
  return Math.hypot(a.x - b.x, a.y - b.y);
}));

// One graph, one dagre layout: left to right, unless top to bottom fits the graph area at a
// clearly larger size; a layout whose longest edge, at the zoom it is shown at, spans less than
// the graph area comes first.
function layoutWhole() {
  let best = null;
  for (const rankDir of ["LR", "TB"]) {
    cy.layout({ name: "dagre", rankDir, nodeSep: 16, rankSep: 50 }).run();
    cy.fit(undefined, 24);
    const shown = Math.min(1.4, Math.max(cy.zoom(), READABLE_ZOOM));
    const fits = longestEdge(cy.edges()) * shown < cy.width() - 48;
    if (!best || (fits && !best.fits) || (fits === best.fits && cy.zoom() > best.zoom * 1.15)) {
      best = { rankDir, zoom: cy.zoom(), fits };
    }
    if (fits && cy.zoom() >= 1) break;
  }
  if (best.rankDir !== "TB") cy.layout({ name: "dagre", rankDir: best.rankDir, nodeSep: 16, rankSep: 50 }).run();
}

// The platform view: each domain's box laid out on its own (dagre, left to right and top to
// bottom), then the boxes packed into rows (shelves), choosing each box's direction and the rows'
// width so that the whole platform is shown as large as it can be: every box in view with
// readable labels when that is possible, else readable and no wider than the graph area.
// A dataset of several domains (outside every box) is a block of its own: packed last, it fills
// what the rows leave free.
const BOX_GAP = 24; // model px between packed boxes

// A block laid out one way: its box and where each of its nodes went.
function layoutBlock(block, rankDir) {
  const inner = block.connectedEdges().filter((e) => block.has(e.source()) && block.has(e.target()));
  block.union(inner).layout({ name: "dagre", rankDir, nodeSep: 10, rankSep: 30, fit: false }).run();
  const bb = block.boundingBox();
  return { x1: bb.x1, y1: bb.y1, w: bb.w, h: bb.h, longest: longestEdge(inner),
           positions: block.filter((n) => n.isChildless()).map((n) => [n, { ...n.position() }]) };
}

// Boxes ({w, h}) in rows, in order, a row no wider than `limit` unless one box is: {rows, w, h};
// a row: {h, items: [[index of the box, its x]]}.
function shelves(boxes, limit) {
  const rows = [];
  boxes.forEach((box, i) => {
    const row = rows[rows.length - 1];
    if (row && row.w + BOX_GAP + box.w <= limit) {
      row.items.push([i, row.w + BOX_GAP]);
      row.w += BOX_GAP + box.w;
      row.h = Math.max(row.h, box.h);
    } else rows.push({ items: [[i, 0]], w: box.w, h: box.h });
  });
  return { rows, w: Math.max(...rows.map((r) => r.w)), h: rows.reduce((h, r) => h + r.h, 0) + BOX_GAP * (rows.length - 1) };
}

function packDomains() {
  const groups = [...cy.nodes(".domain").map((d) => d.union(d.descendants())),
                  ...cy.nodes().filter((n) => n.isOrphan() && !n.hasClass("domain")).map((n) => n.collection())];
  const blocks = groups.map((eles) => {
    const [lr, tb] = [layoutBlock(eles, "LR"), layoutBlock(eles, "TB")];
    const ways = Math.round(lr.w) === Math.round(tb.w) && Math.round(lr.h) === Math.round(tb.h) ? [lr] : [lr, tb];
    return { ways, compact: ways.reduce((x, y) => (x.w * x.h <= y.w * y.h ? x : y)) };
  });
  // the largest first (dagre is deterministic: a stable order)
  blocks.sort((a, b) => b.compact.w * b.compact.h - a.compact.w * a.compact.h);

  const fitW = cy.width() - 48, fitH = cy.height() - 48; // fitReadable's margins
  // better: no edge of a box as long as the graph area is wide; then everything in view at a
  // readable zoom (the larger, the better, up to 1.4, then the one that would fill the area
  // best); else readable within the graph's width (the shorter, the better); else as narrow,
  // then as short, as can be
  const score = (ways, packed) => {
    const fill = Math.min(fitW / packed.w, fitH / packed.h), zoom = Math.min(fill, 1.4);
    const fits = ways.every((w) => w.longest * Math.max(zoom, READABLE_ZOOM) < fitW);
    if (zoom >= READABLE_ZOOM) return [fits, 2, zoom, fill];
    if (packed.w * READABLE_ZOOM <= fitW) return [fits, 1, -packed.h, 0];
    return [fits, 0, -packed.w, -packed.h];
  };
  const better = (a, b) => { const i = a.findIndex((x, k) => x !== b[k]); return i >= 0 && a[i] > b[i]; };
  let best = null;
  // every choice of directions (up to 64 choices; beyond, each box its more compact way)
  const choices = blocks.reduce((n, b) => n * b.ways.length, 1);
  for (let c = 0; c < (choices <= 64 ? choices : 1); c++) {
    let rest = c;
    const ways = blocks.map((b) => {
      if (choices > 64) return b.compact;
      const way = b.ways[rest % b.ways.length];
      rest = Math.floor(rest / b.ways.length);
      return way;
    });
    const limits = new Set(); // the widths at which the rows change: those of runs of consecutive boxes
    for (let i = 0; i < ways.length; i++) {
      let w = -BOX_GAP;
      for (let j = i; j < ways.length; j++) limits.add((w += BOX_GAP + ways[j].w));
    }
    for (const limit of limits) {
      const packed = shelves(ways, limit);
      const s = score(ways, packed);
      if (!best || better(s, best.score)) best = { score: s, ways, packed };
    }
  }
  let y = 0;
  for (const row of best.packed.rows) {
    for (const [i, x] of row.items) {
      const way = best.ways[i];
      for (const [n, p] of way.positions) n.position({ x: p.x - way.x1 + x, y: p.y - way.y1 + y });
    }
    y += row.h + BOX_GAP;
  }
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

// -- the platform view: one node per DAG, grouped by domain (team), with the datasets that
// connect DAGs; a DAG expands into its tasks and everything they read and write. ------------
const expanded = new Set();
let allJobs = null;

async function jobsOfUser() {
  if (!allJobs) allJobs = (await api("/jobs?limit=1000")).jobs;
  return allJobs;
}

// {dags: Map dagId -> {dagId, team, job (the DAG-level job), tasks}, datasets: Map id -> {ns, name, writers, readers}}
function platformModel(jobs) {
  const dags = new Map(), datasets = new Map();
  for (const j of jobs) {
    const dagId = j.dagId || j.name.split(".")[0];
    if (!dags.has(dagId)) dags.set(dagId, { dagId, team: j.team || "(no team)", job: null, tasks: [] });
    const dag = dags.get(dagId);
    if (j.name === dagId) { dag.job = j; continue; }
    dag.tasks.push(j);
    for (const [list, role] of [[j.inputs, "readers"], [j.outputs, "writers"]]) {
      for (const d of list) {
        const id = nodeId("dataset", d.namespace, d.name);
        if (!datasets.has(id)) datasets.set(id, { id, ns: d.namespace, name: d.name, writers: new Set(), readers: new Set() });
        datasets.get(id)[role].add(dagId);
      }
    }
  }
  return { dags, datasets };
}

const dagLabel = (dag) => `${clip(dag.dagId, 40)}\n${dag.tasks.length} task${dag.tasks.length === 1 ? "" : "s"}`;

async function platformView(select) {
  status("Loading…");
  const { dags, datasets } = platformModel(await jobsOfUser());
  const nodes = [], edges = [];
  const domains = new Set([...dags.values()].map((d) => d.team));
  for (const team of domains) nodes.push({ id: `domain:${team}`, type: "domain", name: team, label: team });
  const connecting = [...datasets.values()].filter((d) => new Set([...d.writers, ...d.readers]).size > 1);
  const shown = new Map(connecting.map((d) => [d.id, d]));
  for (const dag of dags.values()) {
    const state = dag.job?.latestRun?.state;
    if (!expanded.has(dag.dagId)) {
      nodes.push({ id: `dag:${dag.dagId}`, type: "dag", name: dag.dagId, parent: `domain:${dag.team}`,
                   label: dagLabel(dag), data: dag, failed: state === "FAILED" });
      continue;
    }
    nodes.push({ id: `dag:${dag.dagId}`, type: "dag-open", name: dag.dagId, parent: `domain:${dag.team}`,
                 label: clip(dag.dagId, 40), data: dag });
    for (const t of dag.tasks) {
      const jid = nodeId("job", t.namespace, t.name);
      nodes.push({ id: jid, type: "job", ns: t.namespace, name: t.name, parent: `dag:${dag.dagId}`, data: t,
                   label: clip(t.name.slice(dag.dagId.length + 1) || t.name) });
      for (const d of t.inputs) { shown.set(nodeId("dataset", d.namespace, d.name), datasets.get(nodeId("dataset", d.namespace, d.name))); edges.push([nodeId("dataset", d.namespace, d.name), jid]); }
      for (const d of t.outputs) { shown.set(nodeId("dataset", d.namespace, d.name), datasets.get(nodeId("dataset", d.namespace, d.name))); edges.push([jid, nodeId("dataset", d.namespace, d.name)]); }
    }
  }
  for (const d of shown.values()) {
    // a dataset sits in the domain box of the DAGs that write it when they are all of one domain;
    // one no DAG writes (a source), in the box of the DAGs that read it, likewise
    const teams = new Set([...(d.writers.size ? d.writers : d.readers)].map((w) => dags.get(w).team));
    nodes.push({ id: d.id, type: "dataset", ns: d.ns, name: d.name, parent: teams.size === 1 ? `domain:${[...teams][0]}` : null });
    for (const w of d.writers) if (!expanded.has(w)) edges.push([`dag:${w}`, d.id]);
    for (const r of d.readers) if (!expanded.has(r)) edges.push([d.id, `dag:${r}`]);
  }
  draw(nodes, edges, select);
  const between = connecting.length;
  status(`${dags.size} DAG${dags.size === 1 ? "" : "s"} in ${domains.size} domain${domains.size === 1 ? "" : "s"}, ` +
         `${between} dataset${between === 1 ? "" : "s"} between DAGs` +
         (!expanded.size ? "" : expanded.size <= 2 ? `; tasks of ${[...expanded].sort().join(", ")}`
                                                     : `; tasks of ${expanded.size} DAGs`));
  renderList(dags, datasets);
}

function toggleDag(dagId) {
  if (expanded.has(dagId)) expanded.delete(dagId); else expanded.add(dagId);
  return platformView(`dag:${dagId}`);
}

// The list beside the graph (as Marquez's jobs and datasets lists): DAGs by domain, datasets.
function renderList(dags, datasets) {
  const list = $("list");
  const filter = $("list-filter").value.trim().toLowerCase();
  const byTeam = new Map();
  for (const dag of [...dags.values()].sort((a, b) => a.dagId.localeCompare(b.dagId))) {
    if (!byTeam.has(dag.team)) byTeam.set(dag.team, []);
    byTeam.get(dag.team).push(dag);
  }
  const body = el("div", { id: "list-body" });
  for (const team of [...byTeam.keys()].sort()) {
    const rows = byTeam.get(team).filter((d) => !filter || d.dagId.toLowerCase().includes(filter) ||
                                                d.tasks.some((t) => t.name.toLowerCase().includes(filter)));
    if (!rows.length) continue;
    body.append(el("h3", {}, team));
    for (const dag of rows) {
      const state = dag.job?.latestRun?.state || "";
      const b = el("button", { type: "button", class: "dag-item", "data-dag": dag.dagId },
                   `${expanded.has(dag.dagId) ? "▾" : "▸"} ${dag.dagId}`);
      b.addEventListener("click", () => toggleDag(dag.dagId).catch((e) => status(e.message, true)));
      body.append(el("div", { class: "row" }, b, el("span", { class: `state-${state}` }, `${dag.tasks.length} tasks`)));
    }
  }
  const ds = [...datasets.values()].filter((d) => !filter || d.name.toLowerCase().includes(filter))
    .sort((a, b) => a.name.localeCompare(b.name));
  body.append(el("h3", {}, `Datasets (${ds.length})`));
  for (const d of ds) {
    const b = el("button", { type: "button", class: "dataset-item", title: `${d.name}\n${d.ns}` }, datasetShort(d.ns, d.name));
    b.addEventListener("click", () => lineageOf(d.id).catch((e) => status(e.message, true)));
    body.append(el("div", { class: "row" }, b));
  }
  list.querySelector("#list-body")?.remove();
  list.append(body);
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
  if (job.currentVersion) panel.append(el("p", { class: "meta", title: job.currentVersion }, `version ${job.currentVersion.slice(0, 8)}`));
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
  if (ds.columnLineage?.length) {
    panel.append(el("h3", {}, "Column lineage"), el("table", { class: "column-lineage" },
      el("tr", {}, el("th", {}, "column"), el("th", {}, "from")),
      ...ds.columnLineage.map((c) => el("tr", {}, el("td", {}, c.name),
        el("td", {}, c.inputFields.map((f) => `${f.dataset}.${f.field}` +
          (f.transformationType ? ` (${f.transformationType.toLowerCase()})` : "")).join(", "))))));
  }
  const { versions, totalCount } = await api(`/namespaces/${seg(ds.namespace)}/datasets/${seg(ds.name)}/versions?limit=8`);
  panel.append(el("h3", {}, `Versions (${totalCount})`), versions.length ? el("table", { class: "versions" },
    el("tr", {}, el("th", {}, "version"), el("th", {}, "created"), el("th", {}, "by"), el("th", {}, "columns")),
    ...versions.map((v) => el("tr", { title: v.version }, el("td", {}, v.version.slice(0, 8)),
      el("td", {}, v.createdAt.replace("T", " ").slice(0, 16)),
      el("td", { class: v.createdByRun ? `state-${v.createdByRun.state}` : "" },
         v.createdByRun ? `run ${v.createdByRun.state.toLowerCase()}` : "read"),
      el("td", {}, String(v.fields.length))))) : el("p", { class: "hint" }, "No versions."));
}

function focusButton(panel, id) {
  const b = el("button", { type: "button" }, "Lineage from here");
  b.addEventListener("click", () => lineageOf(id).catch((e) => status(e.message, true)));
  panel.append(b);
}

cy.on("tap", "node", (evt) => {
  const d = evt.target.data();
  if (d.type === "domain") return;
  if ($("panel").hidden) { $("panel").hidden = false; cy.resize(); fitReadable(); } // the graph's area narrowed
  const show = d.type === "job" ? showJob : d.type === "dataset" ? showDataset : showDag;
  show(d).catch((e) => status(e.message, true));
});
cy.on("dbltap", "node.dag, node.dag-open", (evt) => toggleDag(evt.target.data("dag")).catch((e) => status(e.message, true)));

async function showDag(d) {
  const { dags } = platformModel(await jobsOfUser());
  const dag = dags.get(d.dag);
  const panel = $("panel");
  const b = el("button", { type: "button" }, expanded.has(dag.dagId) ? "Collapse tasks" : "Expand tasks");
  b.addEventListener("click", () => toggleDag(dag.dagId).catch((e) => status(e.message, true)));
  panel.replaceChildren(el("h2", {}, dag.dagId), el("div", { class: "meta" }, `DAG · team ${dag.team}`),
                        el("p", {}, uiLink(`/dags/${seg(dag.dagId)}`, `DAG ${dag.dagId}`)), b,
                        el("h3", {}, "Tasks"),
                        el("ul", {}, ...dag.tasks.map((t) => el("li", {}, t.name.slice(dag.dagId.length + 1)))));
}

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
const home = () => (DAG_ID ? overview() : platformView());
$("overview").textContent = DAG_ID ? `All jobs of ${DAG_ID}` : "All DAGs";
$("overview").addEventListener("click", () => home().catch((e) => status(e.message, true)));
$("list-filter").addEventListener("input", () => jobsOfUser().then((jobs) => {
  const { dags, datasets } = platformModel(jobs);
  renderList(dags, datasets);
}).catch((e) => status(e.message, true)));
if (DAG_ID) $("list").hidden = true;
home().catch((e) => status(e.message, true));
