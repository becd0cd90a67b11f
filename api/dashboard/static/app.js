// Suanli dashboard: reads the census service's /v1 API with the signed-in token and draws it.
//
// Plain modern JavaScript, no build step, no framework. Charts use window.Plotly, served by this same service
// from the installed plotly package; nothing is ever fetched from another origin. Every value that comes from the
// API is put into the page with textContent (never innerHTML): hostnames and names are reported by agents and
// users, so they are untrusted. The token lives in sessionStorage (this tab only) and goes only into the
// Authorization header of same-origin requests.
"use strict";

const TOKEN_KEY = "suanli.token";
const LANG_KEY = "suanli.lang";
const TIERS = ["general", "ai", "hpc", "edge"];
const TIER_COLOURS = { general: "#4C78A8", ai: "#F58518", hpc: "#54A24B", edge: "#B279A2" };
const STATUSES = ["active", "stale", "offline"];
const CHART_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

const I18N = {
  en: {
    title: "Compute census", langButton: "中文", signIn: "Sign in", signOut: "Sign out", refresh: "Refresh",
    tokenLabel: "API token",
    tokenHelp: "A token from an administrator (suanli token create). It is kept in this browser tab only and sent "
      + "to this service only.",
    navOverview: "Overview", navRegions: "Districts", navNodes: "Nodes", navJobs: "Jobs",
    total: "Total compute", perCapita: "Per-capita compute", perPerson: "per person", area: "Area",
    nodesCounted: "Nodes counted", asOf: "as of", convention: "Headline convention",
    nodeDetail: "{cores} cores · {acc} accelerators · {mem} memory · {statuses} nodes",
    population: "population {n}",
    composition: "Composition by tier", growth: "Growth over time",
    growthText: "×{ratio} from {from} to {to}; {nodes} nodes added",
    growthNone: "The history has fewer than two snapshots so far (one is taken every snapshot interval).",
    byDistrict: "Compute by district", computeByDistrict: "Compute (headline)",
    perCapitaByDistrict: "Per-capita compute", sortHint: "Click a column heading to sort.",
    headlineLine: "Total",
    tier: "Tier", region: "Region", status: "Status", perPage: "Per page", all: "All",
    district: "District", code: "Code", nodes: "Nodes", headline: "Compute (headline)", population_: "Population",
    share: "Share", precision: "Precision", cores: "Cores", accelerators: "Accelerators", memory: "Memory",
    node: "Node", hostname: "Hostname", organisation: "Organisation", peak: "Peak (headline precision)",
    lastReport: "Last report", prev: "Previous", next: "Next",
    nodesShown: "{n} nodes on page {page}", noRegion: "(no region)",
    queuePerTier: "Queue per tier", served: "Served", censusNodes: "Census nodes", schedNodes: "Scheduler nodes",
    freeCpus: "Free CPUs", freeGpus: "Free GPUs", freeMemory: "Free memory", running: "Running",
    dispatching: "Dispatching", queued: "Queued", notPlanned: "{n} queued job(s) not yet planned onto a tier.",
    waitingJobs: "Waiting, and why", runningJobs: "Running", recentJobs: "Recent",
    job: "Job", name: "Name", klass: "Class", owner: "Owner", priority: "Priority", place: "Place",
    submitted: "Submitted", started: "Started", finished: "Finished", state: "State", reason: "Reason",
    yes: "yes", no: "no", unreachable: "unreachable",
    forbidden: "Not permitted for this role.", failed: "Could not load", loading: "Loading…",
    empty: "Nothing to show.", badToken: "This token was not accepted", tokenMissing: "Enter a token.",
    noCharts: "Charts unavailable: plotly.js could not be loaded from this server.",
    footer: "Figures are peak compute (Rpeak) from the census agents' reports; charts are drawn offline with the "
      + "plotly.js installed on this server.",
    level_country: "Country", level_province: "Province", level_city: "City", level_district: "District",
    tier_general: "General compute", tier_ai: "AI compute", tier_hpc: "Supercomputing", tier_edge: "Edge compute",
    status_active: "active", status_stale: "stale", status_offline: "offline",
    state_queued: "queued", state_dispatching: "dispatching", state_running: "running",
    state_succeeded: "succeeded", state_failed: "failed", state_cancelled: "cancelled",
    class_general: "general", "class_in-memory": "in-memory", class_hpc: "hpc", class_ai: "ai", class_edge: "edge",
  },
  zh: {
    title: "算力普查", langButton: "English", signIn: "登录", signOut: "退出", refresh: "刷新",
    tokenLabel: "访问令牌",
    tokenHelp: "由管理员签发的令牌（suanli token create）。令牌只保存在本浏览器标签页中，只发送给本服务。",
    navOverview: "概览", navRegions: "区县", navNodes: "节点", navJobs: "作业",
    total: "总算力", perCapita: "人均算力", perPerson: "每人", area: "地区",
    nodesCounted: "计入节点", asOf: "截至", convention: "统计口径",
    nodeDetail: "{cores} 个核心 · {acc} 块加速卡 · 内存 {mem} · {statuses} 节点",
    population: "人口 {n}",
    composition: "算力构成", growth: "算力增长",
    growthText: "{from} 至 {to} 增长 ×{ratio}，新增 {nodes} 个节点",
    growthNone: "历史快照不足两个（每个快照周期记录一次）。",
    byDistrict: "各区县算力", computeByDistrict: "算力（统计口径）",
    perCapitaByDistrict: "人均算力", sortHint: "点击列标题排序。",
    headlineLine: "总算力",
    tier: "算力类型", region: "地区", status: "状态", perPage: "每页", all: "全部",
    district: "区县", code: "代码", nodes: "节点数", headline: "算力（统计口径）", population_: "人口",
    share: "占比", precision: "精度", cores: "核心", accelerators: "加速卡", memory: "内存",
    node: "节点", hostname: "主机名", organisation: "单位", peak: "峰值（口径精度）",
    lastReport: "最近上报", prev: "上一页", next: "下一页",
    nodesShown: "第 {page} 页，{n} 个节点", noRegion: "（无地区）",
    queuePerTier: "各类算力队列", served: "已接入", censusNodes: "普查节点", schedNodes: "调度节点",
    freeCpus: "空闲 CPU", freeGpus: "空闲 GPU", freeMemory: "空闲内存", running: "运行中",
    dispatching: "分派中", queued: "排队中", notPlanned: "{n} 个排队作业尚未分配算力类型。",
    waitingJobs: "排队作业及原因", runningJobs: "运行中", recentJobs: "最近作业",
    job: "作业", name: "名称", klass: "类别", owner: "提交者", priority: "优先级", place: "排位",
    submitted: "提交时间", started: "开始时间", finished: "结束时间", state: "状态", reason: "原因",
    yes: "是", no: "否", unreachable: "不可达",
    forbidden: "当前角色无权查看此内容。", failed: "加载失败", loading: "加载中…",
    empty: "暂无数据。", badToken: "令牌无效", tokenMissing: "请输入令牌。",
    noCharts: "图表不可用：无法从本服务器加载 plotly.js。",
    footer: "数据为普查代理上报的峰值算力（Rpeak）；图表由本服务器安装的 plotly.js 离线绘制。",
    level_country: "全国", level_province: "省", level_city: "市", level_district: "区县",
    tier_general: "通用算力", tier_ai: "智能算力", tier_hpc: "超算算力", tier_edge: "边缘算力",
    status_active: "在线", status_stale: "延迟", status_offline: "离线",
    state_queued: "排队中", state_dispatching: "分派中", state_running: "运行中",
    state_succeeded: "成功", state_failed: "失败", state_cancelled: "已取消",
    class_general: "通用", "class_in-memory": "内存密集", class_hpc: "超算", class_ai: "智算", class_edge: "边缘",
  },
};

// ---- state ------------------------------------------------------------------------------------------------

let lang = localStorage.getItem(LANG_KEY) || (navigator.language.toLowerCase().startsWith("zh") ? "zh" : "en");
// Each view: {state: "loading" | "ok" | "forbidden" | "error", data, detail}
const views = {};
const nodePaging = { cursors: [null], page: 0 };
let scopeCode = null;
const sorting = { key: "headline_flops", descending: true };

// ---- helpers ----------------------------------------------------------------------------------------------

function t(key, values = {}) {
  const text = (I18N[lang] && I18N[lang][key]) ?? I18N.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const numberFormat = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const bytesFormat = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const integerFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const FLOPS_UNITS = [[1e18, "EFLOPS"], [1e15, "PFLOPS"], [1e12, "TFLOPS"], [1e9, "GFLOPS"], [1e6, "MFLOPS"]];
const BYTE_UNITS = [[2 ** 50, "PiB"], [2 ** 40, "TiB"], [2 ** 30, "GiB"], [2 ** 20, "MiB"], [2 ** 10, "KiB"]];

// The same text as census_agent.render.human_flops: "2.34 TFLOPS" (TOPS for integer ops).
function humanFlops(value, ops = false) {
  if (value === null || value === undefined) return "–";
  for (const [scale, unit] of FLOPS_UNITS) {
    if (Math.abs(value) >= scale) {
      const text = `${numberFormat.format(value / scale)} ${unit}`;
      return ops ? text.replace("FLOPS", "OPS") : text;
    }
  }
  return `${integerFormat.format(value)} ${ops ? "OPS" : "FLOPS"}`;
}

// The same text as census_agent.render.human_bytes: "23.4 GiB".
function humanBytes(value) {
  if (value === null || value === undefined) return "–";
  for (const [scale, unit] of BYTE_UNITS) {
    if (Math.abs(value) >= scale) return `${bytesFormat.format(value / scale)} ${unit}`;
  }
  return `${integerFormat.format(value)} B`;
}

const integer = (n) => (n === null || n === undefined ? "–" : integerFormat.format(n));
const percent = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);

function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return date.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { dateStyle: "medium", timeStyle: "short" });
}

function regionName(region) {
  if (!region) return t("noRegion");
  return lang === "zh" ? region.name_zh : region.name_en;
}

const tierName = (tier) => t(`tier_${tier}`);

// ---- the API ----------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

// GET by default; planning.js also POSTs a JSON body (text) with {method: "POST", body}.
async function api(path, params = {}, { method = "GET", body = null } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
  }
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  if (body !== null) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, { method, headers, body, cache: "no-store", credentials: "omit" });
  } catch (error) {
    throw new ApiError(0, String(error.message || error));
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = body.detail || body.title || detail;
    } catch { /* not JSON: keep the status text */ }
    throw new ApiError(response.status, `${response.status} ${detail}`);
  }
  return response.json();
}

// Load one view into views[name]; a 401 anywhere signs out with the reason. False when signed out.
async function load(name, fetcher) {
  views[name] = { state: "loading", data: views[name]?.data ?? null };
  try {
    views[name] = { state: "ok", data: await fetcher() };
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      signOut(`${t("badToken")}: ${error.detail}`);
      return false;
    }
    const forbidden = error instanceof ApiError && error.status === 403;
    views[name] = { state: forbidden ? "forbidden" : "error", data: null, detail: error.detail || String(error) };
  }
  return true;
}

// ---- rendering: shared pieces -----------------------------------------------------------------------------

function showMessage(id, view) {
  const node = $(id);
  node.classList.remove("error", "forbidden");
  if (!view || view.state === "ok") {
    node.hidden = true;
    node.textContent = "";
    return;
  }
  node.hidden = false;
  if (view.state === "loading") node.textContent = t("loading");
  else if (view.state === "forbidden") {
    node.classList.add("forbidden");
    node.replaceChildren(el("strong", {}, t("forbidden")), " ", el("span", { className: "detail" }, view.detail));
  } else {
    node.classList.add("error");
    node.textContent = `${t("failed")}: ${view.detail}`;
  }
}

// columns: [{key, label, value(row) -> text|Node, sort(row) -> comparable, className}]
function fillTable(table, columns, rows, { sortable = false, rowData = null } = {}) {
  const headRow = el("tr");
  for (const column of columns) {
    const th = el("th", { scope: "col", className: column.className || "" });
    if (sortable && column.sort) {
      const active = sorting.key === column.key;
      th.setAttribute("aria-sort", active ? (sorting.descending ? "descending" : "ascending") : "none");
      th.append(el("button", {
        type: "button",
        className: "sort",
        dataset: { key: column.key },
        onclick: () => {
          sorting.descending = sorting.key === column.key ? !sorting.descending : true;
          sorting.key = column.key;
          renderRegions();
        },
      }, column.label, active ? (sorting.descending ? " ▼" : " ▲") : ""));
    } else {
      th.textContent = column.label;
    }
    headRow.append(th);
  }
  const body = el("tbody");
  if (!rows.length) {
    body.append(el("tr", {}, el("td", { colspan: String(columns.length), className: "empty" }, t("empty"))));
  }
  for (const row of rows) {
    const tr = el("tr", rowData ? { dataset: rowData(row) } : {});
    for (const column of columns) tr.append(el("td", { className: column.className || "" }, column.value(row)));
    body.append(tr);
  }
  table.replaceChildren(el("thead", {}, headRow), body);
}

function chartsAvailable(ids) {
  if (window.Plotly) return true;
  for (const id of ids) $(id).replaceChildren(el("p", { className: "message error" }, t("noCharts")));
  return false;
}

function baseLayout(extra = {}) {
  return {
    margin: { l: 60, r: 20, t: 10, b: 50 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, 'Segoe UI', 'Noto Sans CJK SC', 'Microsoft YaHei', sans-serif",
      size: 12, color: "#1f2937" },
    showlegend: false,
    ...extra,
  };
}

function plot(id, traces, layout) {
  window.Plotly.react($(id), traces, baseLayout(layout), CHART_CONFIG);
}

// A chart's unit from its largest value (as humanFlops picks one): plot values / scale, title the axis with unit.
function flopsUnit(values) {
  const top = Math.max(0, ...values.filter(Number.isFinite));
  for (const [scale, unit] of FLOPS_UNITS) if (top >= scale) return { scale, unit };
  return { scale: 1, unit: "FLOPS" };
}

function flopsAxis({ unit }) {
  return { title: { text: unit, standoff: 8 }, rangemode: "tozero", gridcolor: "#e5e7eb", zeroline: false };
}

function clearChart(id) {
  if (window.Plotly) window.Plotly.purge($(id));
  $(id).replaceChildren();
}

// ---- rendering: census ------------------------------------------------------------------------------------

function regionsByCode() {
  const census = views.census?.data;
  return new Map((census?.by_region || []).map((r) => [r.code, r]));
}

// The deepest region above districts that holds every node with a region (e.g. Guangzhou for a city's census).
function defaultScope(census) {
  const regions = census.by_region;
  let current = regions.find((r) => r.parent_code === null);
  while (current) {
    const children = regions.filter((r) => r.parent_code === current.code && r.level !== "district");
    const whole = children.find((r) => r.nodes > 0 && r.nodes === current.nodes);
    if (!whole) break;
    current = whole;
  }
  return current ? current.code : null;
}

function districtsOf(census, code) {
  const byCode = regionsByCode();
  const below = (r) => {
    for (let p = r.parent_code; p; p = byCode.get(p)?.parent_code) if (p === code) return true;
    return false;
  };
  return census.by_region.filter((r) => r.level === "district" && below(r));
}

function renderCensus() {
  const view = views.census;
  showMessage("census-status", view);
  const census = view?.data;
  if (!census) {
    for (const id of ["headline-total", "per-capita", "node-count"]) $(id).textContent = "–";
    for (const id of ["headline-note", "node-detail", "population", "as-of", "growth"]) $(id).textContent = "";
    $("scope").replaceChildren();
    $("tier-table").replaceChildren();
    clearChart("chart-tiers");
    return;
  }
  $("as-of").textContent = `${t("asOf")} ${when(census.as_of)}`;
  $("headline-total").textContent = humanFlops(census.headline.flops);
  const convention = TIERS.map((tier) => `${tierName(tier)} ${census.headline.convention[tier]}`).join(" · ");
  $("headline-note").textContent = `${t("convention")}: ${convention}`;
  $("node-count").textContent = integer(census.totals.nodes);
  $("node-detail").textContent = t("nodeDetail", {
    cores: integer(census.totals.physical_cores), acc: integer(census.totals.accelerators),
    mem: humanBytes(census.totals.memory_bytes), statuses: census.statuses.map((s) => t(`status_${s}`)).join("/"),
  });

  const candidates = census.by_region.filter((r) => r.level !== "district");
  if (!scopeCode || !candidates.some((r) => r.code === scopeCode)) scopeCode = defaultScope(census);
  $("scope").replaceChildren(...candidates.map((r) => el("option", { value: r.code }, `${regionName(r)} (${r.code})`)));
  $("scope").value = scopeCode ?? "";
  const scope = regionsByCode().get(scopeCode);
  if (scope && scope.per_capita_headline_flops !== null) {
    $("per-capita").replaceChildren(humanFlops(scope.per_capita_headline_flops), " ",
      el("span", { className: "unit" }, t("perPerson")));
  } else {
    $("per-capita").textContent = "–";
  }
  $("population").textContent = scope?.population ? t("population", { n: integer(scope.population) }) : "";

  const tiers = census.by_tier;
  fillTable($("tier-table"), [
    { key: "tier", label: t("tier"), value: (r) => tierBadge(r.tier) },
    { key: "nodes", label: t("nodes"), value: (r) => integer(r.nodes), className: "num" },
    { key: "headline", label: t("headline"), value: (r) => humanFlops(r.headline_flops), className: "num" },
    { key: "precision", label: t("precision"), value: (r) => r.headline_precision },
    { key: "share", label: t("share"), value: (r) => percent(r.share_of_headline), className: "num" },
    { key: "acc", label: t("accelerators"), value: (r) => integer(r.accelerators), className: "num" },
  ], tiers, { rowData: (r) => ({ tier: r.tier }) });
  if (chartsAvailable(["chart-tiers"])) {
    plot("chart-tiers", [{
      type: "pie", hole: 0.55, sort: false, direction: "clockwise",
      labels: tiers.map((r) => tierName(r.tier)),
      values: tiers.map((r) => r.headline_flops),
      text: tiers.map((r) => humanFlops(r.headline_flops)),
      marker: { colors: tiers.map((r) => TIER_COLOURS[r.tier]) },
      textinfo: "percent", textposition: "inside", insidetextorientation: "horizontal", hovertemplate: "%{label}<br>%{text}<br>%{percent}<extra></extra>",
    }], { showlegend: true, legend: { orientation: "v", x: 1, y: 0.5 }, margin: { l: 10, r: 10, t: 10, b: 10 },
      uniformtext: { mode: "hide", minsize: 10 },
      annotations: [{ text: humanFlops(census.headline.flops), showarrow: false, font: { size: 14 } }] });
  }
}

function tierBadge(tier) {
  return el("span", { className: `badge tier-${tier}` }, tierName(tier));
}

function renderHistory() {
  const view = views.history;
  const points = view?.data?.points || [];
  if (view?.state !== "ok") {
    clearChart("chart-history");
    $("growth").textContent = view?.state === "forbidden" ? t("forbidden") : view?.detail ? `${t("failed")}: ${view.detail}` : "";
    return;
  }
  const growth = view.data.growth;
  $("growth").textContent = growth
    ? t("growthText", { ratio: growth.headline_ratio.toFixed(2), from: when(growth.from), to: when(growth.to),
      nodes: integer(growth.nodes_added) })
    : t("growthNone");
  if (!chartsAvailable(["chart-history"])) return;
  const x = points.map((p) => p.taken_at);
  const unit = flopsUnit(points.map((p) => p.headline_flops));
  const traces = TIERS.map((tier) => ({
    type: "scatter", mode: "lines", name: tierName(tier), x, stackgroup: "tiers",
    y: points.map((p) => p.by_tier_headline_flops[tier] / unit.scale),
    text: points.map((p) => humanFlops(p.by_tier_headline_flops[tier])),
    line: { color: TIER_COLOURS[tier], width: 1 }, hovertemplate: "%{fullData.name}: %{text}<extra></extra>",
  }));
  traces.push({
    type: "scatter", mode: "lines+markers", name: t("headlineLine"), x,
    y: points.map((p) => p.headline_flops / unit.scale), text: points.map((p) => humanFlops(p.headline_flops)),
    line: { color: "#111827", width: 2.5 }, marker: { size: 5 }, hovertemplate: "%{fullData.name}: %{text}<extra></extra>",
  });
  plot("chart-history", traces, {
    showlegend: true, legend: { orientation: "h", y: -0.2 }, hovermode: "x unified",
    yaxis: flopsAxis(unit), xaxis: { type: "date", gridcolor: "#f3f4f6" }, margin: { l: 60, r: 20, t: 10, b: 40 },
  });
}

function renderRegions() {
  const census = views.census?.data;
  const scope = regionsByCode().get(scopeCode);
  $("regions-scope").textContent = scope ? `· ${regionName(scope)}` : "";
  if (!census) {
    $("region-table").replaceChildren();
    clearChart("chart-districts");
    clearChart("chart-per-capita");
    return;
  }
  const districts = districtsOf(census, scopeCode);
  const columns = [
    { key: "name", label: t("district"), value: (r) => regionName(r), sort: (r) => regionName(r) },
    { key: "code", label: t("code"), value: (r) => r.code, sort: (r) => r.code },
    { key: "nodes", label: t("nodes"), value: (r) => integer(r.nodes), sort: (r) => r.nodes, className: "num" },
    { key: "headline_flops", label: t("headline"), value: (r) => humanFlops(r.headline_flops),
      sort: (r) => r.headline_flops, className: "num" },
    ...TIERS.map((tier) => ({
      key: `tier_${tier}`, label: tierName(tier), className: "num",
      value: (r) => humanFlops(r.by_tier[tier].peak_flops[census.headline.convention[tier]]),
      sort: (r) => r.by_tier[tier].peak_flops[census.headline.convention[tier]],
    })),
    { key: "population", label: t("population_"), value: (r) => integer(r.population), sort: (r) => r.population ?? -1,
      className: "num" },
    { key: "per_capita", label: t("perCapita"), value: (r) => humanFlops(r.per_capita_headline_flops),
      sort: (r) => r.per_capita_headline_flops ?? -1, className: "num" },
  ];
  const column = columns.find((c) => c.key === sorting.key) || columns[3];
  const sorted = [...districts].sort((a, b) => {
    const [p, q] = [column.sort(a), column.sort(b)];
    const order = typeof p === "string" ? p.localeCompare(q, lang === "zh" ? "zh-CN" : "en") : p - q;
    return sorting.descending ? -order : order;
  });
  fillTable($("region-table"), columns, sorted, { sortable: true, rowData: (r) => ({ code: r.code }) });

  if (!chartsAvailable(["chart-districts", "chart-per-capita"])) return;
  const byHeadline = [...districts].sort((a, b) => b.headline_flops - a.headline_flops).slice(0, 30);
  const names = byHeadline.map((r) => regionName(r));
  const tierFlops = (r, tier) => r.by_tier[tier].peak_flops[census.headline.convention[tier]];
  const unit = flopsUnit(byHeadline.map((r) => r.headline_flops));
  plot("chart-districts", TIERS.map((tier) => ({
    type: "bar", name: tierName(tier), x: names, marker: { color: TIER_COLOURS[tier] },
    y: byHeadline.map((r) => tierFlops(r, tier) / unit.scale),
    text: byHeadline.map((r) => humanFlops(tierFlops(r, tier))),
    textposition: "none", hovertemplate: "%{x} · %{fullData.name}: %{text}<extra></extra>",
  })), { barmode: "stack", showlegend: true, legend: { orientation: "h", y: 1.12 }, yaxis: flopsAxis(unit),
    margin: { l: 60, r: 10, t: 30, b: 60 } });
  const byPerCapita = [...districts].filter((r) => r.per_capita_headline_flops !== null)
    .sort((a, b) => b.per_capita_headline_flops - a.per_capita_headline_flops).slice(0, 30);
  const perCapitaUnit = flopsUnit(byPerCapita.map((r) => r.per_capita_headline_flops));
  plot("chart-per-capita", [{
    type: "bar", x: byPerCapita.map((r) => regionName(r)),
    y: byPerCapita.map((r) => r.per_capita_headline_flops / perCapitaUnit.scale),
    text: byPerCapita.map((r) => humanFlops(r.per_capita_headline_flops)), textposition: "none",
    marker: { color: "#0f766e" }, hovertemplate: `%{x}: %{text} ${t("perPerson")}<extra></extra>`,
  }], { yaxis: flopsAxis({ unit: `${perCapitaUnit.unit} / ${t("perPerson")}` }), margin: { l: 60, r: 10, t: 30, b: 60 } });
}

// ---- rendering: nodes -------------------------------------------------------------------------------------

function nodeFilters() {
  return {
    tier: $("filter-tier").value, region: $("filter-region").value, status: $("filter-status").value,
    limit: $("filter-limit").value,
  };
}

function fillSelect(select, options) {
  const current = select.value;
  select.replaceChildren(el("option", { value: "" }, t("all")),
    ...options.map(([value, label]) => el("option", { value }, label)));
  if ([...select.options].some((o) => o.value === current)) select.value = current;
}

function renderNodeFilters() {
  fillSelect($("filter-tier"), TIERS.map((tier) => [tier, tierName(tier)]));
  fillSelect($("filter-status"), STATUSES.map((s) => [s, t(`status_${s}`)]));
  const regions = views.census?.data?.by_region || [];
  fillSelect($("filter-region"), regions.map((r) => [r.code, `${regionName(r)} (${r.code})`]));
}

function renderNodes() {
  const view = views.nodes;
  showMessage("nodes-status", view);
  const page = view?.data;
  const byCode = regionsByCode();
  const convention = views.census?.data?.headline.convention
    || { general: "fp32", ai: "fp16", hpc: "fp64", edge: "fp32" };
  const precisionField = { fp64: "fp64_flops", fp32: "fp32_flops", fp16: "fp16_flops", int8: "int8_ops" };
  fillTable($("node-table"), [
    { key: "node", label: t("node"), value: (n) => el("code", {}, n.node_id) },
    { key: "host", label: t("hostname"), value: (n) => n.hostname },
    { key: "tier", label: t("tier"), value: (n) => tierBadge(n.tier) },
    { key: "region", label: t("region"), value: (n) => (n.region_code ? regionName(byCode.get(n.region_code))
      || n.region_code : t("noRegion")) },
    { key: "org", label: t("organisation"), value: (n) => n.organisation || "–" },
    { key: "status", label: t("status"), value: (n) => el("span", { className: `status status-${n.status}` },
      t(`status_${n.status}`)) },
    { key: "cores", label: t("cores"), value: (n) => integer(n.physical_cores), className: "num" },
    { key: "acc", label: t("accelerators"), value: (n) => integer(n.accelerators), className: "num" },
    { key: "mem", label: t("memory"), value: (n) => humanBytes(n.memory_bytes), className: "num" },
    { key: "peak", label: t("peak"), className: "num",
      value: (n) => `${humanFlops(n[precisionField[convention[n.tier]]])} ${convention[n.tier]}` },
    { key: "last", label: t("lastReport"), value: (n) => when(n.last_report_at), className: "when" },
  ], page?.items || [], { rowData: (n) => ({ tier: n.tier, status: n.status, region: n.region_code || "" }) });
  const count = page?.items?.length ?? 0;
  $("nodes-count").textContent = page ? t("nodesShown", { n: integer(count), page: nodePaging.page + 1 }) : "";
  $("node-table").removeAttribute("aria-busy");
  if (view) {
    // For scripts and tests: what the table shows now, and for which filters.
    Object.assign($("nodes-count").dataset, { count: String(count), ...view.filters });
  }
  $("nodes-prev").disabled = nodePaging.page === 0;
  $("nodes-next").disabled = !page?.next_after;
}

let nodeRequest = 0;

// The current page of nodes under the current filters; an answer to an older request is dropped.
async function loadNodes() {
  const request = ++nodeRequest;
  const filters = nodeFilters();
  const after = nodePaging.cursors[nodePaging.page];
  $("node-table").setAttribute("aria-busy", "true");
  delete $("nodes-count").dataset.count;
  let result;
  try {
    result = { state: "ok", data: await api("/v1/nodes", { ...filters, after }) };
  } catch (error) {
    if (request !== nodeRequest) return;
    if (error instanceof ApiError && error.status === 401) {
      signOut(`${t("badToken")}: ${error.detail}`);
      return;
    }
    result = { state: error.status === 403 ? "forbidden" : "error", data: null, detail: error.detail || String(error) };
  }
  if (request !== nodeRequest) return;
  views.nodes = { ...result, filters };
  renderNodes();
}

// ---- rendering: jobs --------------------------------------------------------------------------------------

function renderTiers() {
  const view = views.tiers;
  showMessage("tiers-status", view);
  const data = view?.data;
  fillTable($("tiers-table"), [
    { key: "tier", label: t("tier"), value: (r) => tierBadge(r.tier) },
    { key: "served", label: t("served"),
      value: (r) => (r.served ? (r.reachable ? t("yes") : `${t("yes")} (${t("unreachable")})`) : t("no")) },
    { key: "census", label: t("censusNodes"), value: (r) => integer(r.census_active_nodes), className: "num" },
    { key: "sched", label: t("schedNodes"), value: (r) => integer(r.nodes), className: "num" },
    { key: "cpus", label: t("freeCpus"), value: (r) => `${integer(r.free.cpus)} / ${integer(r.capacity.cpus)}`,
      className: "num" },
    { key: "gpus", label: t("freeGpus"), value: (r) => `${integer(r.free.gpus)} / ${integer(r.capacity.gpus)}`,
      className: "num" },
    { key: "mem", label: t("freeMemory"), className: "num",
      value: (r) => `${humanBytes(r.free.memory_bytes)} / ${humanBytes(r.capacity.memory_bytes)}` },
    { key: "running", label: t("running"), value: (r) => integer(r.running), className: "num" },
    { key: "dispatching", label: t("dispatching"), value: (r) => integer(r.dispatching), className: "num" },
    { key: "queued", label: t("queued"), value: (r) => integer(r.queued), className: "num" },
  ], data?.tiers || [], { rowData: (r) => ({ tier: r.tier }) });
  $("not-planned").textContent = data?.queued_not_yet_planned ? t("notPlanned", { n: data.queued_not_yet_planned }) : "";
}

function jobColumns(...keys) {
  const all = {
    job: { label: t("job"), value: (j) => el("code", {}, j.job_id) },
    name: { label: t("name"), value: (j) => j.name },
    klass: { label: t("klass"), value: (j) => t(`class_${j.class}`) },
    tier: { label: t("tier"), value: (j) => (j.tier ? tierBadge(j.tier) : "–") },
    owner: { label: t("owner"), value: (j) => j.owner },
    priority: { label: t("priority"), value: (j) => String(j.priority), className: "num" },
    place: { label: t("place"), value: (j) => (j.position ?? "–"), className: "num" },
    state: { label: t("state"), value: (j) => el("span", { className: `state state-${j.state}` }, t(`state_${j.state}`)) },
    submitted: { label: t("submitted"), value: (j) => when(j.submitted_at), className: "when" },
    started: { label: t("started"), value: (j) => when(j.started_at), className: "when" },
    finished: { label: t("finished"), value: (j) => when(j.finished_at), className: "when" },
    reason: { label: t("reason"), value: (j) => j.reason, className: "reason" },
  };
  return keys.map((key) => ({ key, ...all[key] }));
}

function renderJobs() {
  const view = views.jobs;
  showMessage("jobs-status", view);
  $("job-tables").hidden = view?.state !== "ok";
  const data = view?.data;
  const jobRow = (j) => ({ state: j.state, job: j.job_id });
  fillTable($("queued-table"), jobColumns("job", "name", "klass", "tier", "owner", "priority", "place", "submitted",
    "reason"), data?.queued || [], { rowData: jobRow });
  fillTable($("running-table"), jobColumns("job", "name", "klass", "tier", "owner", "started", "reason"),
    data?.running || [], { rowData: jobRow });
  fillTable($("recent-table"), jobColumns("job", "name", "klass", "tier", "state", "submitted", "finished", "reason"),
    data?.recent || [], { rowData: jobRow });
}

async function loadJobs() {
  const [queued, running, dispatching, recent] = await Promise.all([
    api("/v1/jobs", { state: "queued", limit: 100 }),
    api("/v1/jobs", { state: "running", limit: 100 }),
    api("/v1/jobs", { state: "dispatching", limit: 100 }),
    api("/v1/jobs", { limit: 20 }),
  ]);
  const byPlace = (a, b) => (a.position ?? Infinity) - (b.position ?? Infinity);
  return { queued: queued.items.sort(byPlace), running: [...dispatching.items, ...running.items], recent: recent.items };
}

// ==== utilisation and energy (issue 15 §2-3) ======================================================================
// The utilisation (利用率) and energy (能耗) sections. They read GET /v1/census (per tier and region: capacity,
// allocated and consumed now, their hours over a window the answer states, the ratios, the scheduler's demand,
// power with its provenance, peak GFLOPS per watt, energy) and the layers of GET /v1/census/history's points. The
// line chart is SVG drawn here (it needs no chart library, so it also works where plotly.js is not installed).
// Every value goes on the page as text (el() and textContent), as everywhere on this page.

const UTIL_I18N = {
  en: {
    navUtilisation: "Utilisation", navEnergy: "Energy",
    utilisationTitle: "Utilisation", energyTitle: "Energy", utilWindowLabel: "Window",
    window_3600: "last hour", window_86400: "last 24 hours", window_604800: "last 7 days",
    window_2592000: "last 30 days",
    utilWindowText: "Over the {span} (from {from} to {to}): {n} census snapshots covering {covered}.",
    utilNowTitle: "Capacity, allocated and consumed now, per tier",
    utilNowHelp: "Capacity: the compute the census counts. Allocated: what Suanli's running jobs hold. Consumed: "
      + "what the nodes report busy. Compute at each tier's headline precision.",
    compute: "Compute (headline)", logicalCpus: "Logical CPUs", capacity: "Capacity", allocated: "Allocated",
    consumed: "Consumed", ofCapacity: "of capacity", unpriced: "Unpriced", usageNodes: "Nodes reporting usage",
    allTiers: "All tiers",
    allocatedShareOf: "{tier}: allocated {share} of capacity", consumedShareOf: "{tier}: consumed {share} of capacity",
    unpricedHint: "Unpriced accelerators: {list}. They were found and are counted, but no peak is known for their "
      + "model (not in the catalogue), so their compute counts 0 in every figure here and the census undercounts "
      + "those tiers. Declare their peaks in the node's labels (declared_peaks) or add the model to the catalogue.",
    unpricedNone: "Every accelerator found is priced.",
    utilRatiosTitle: "Utilisation over the window",
    coreHours: "Core-hours", gpuHours: "GPU-hours", flopsWeighted: "FLOPS-weighted",
    cpuHoursUsed: "CPU-h consumed / available", gpuHoursUsed: "Accelerator-h consumed / available",
    allocationFlops: "Allocated (FLOPS-weighted)",
    termCoreHours: "busy logical-CPU hours / available logical-CPU hours over the window.",
    termGpuHours: "accelerator hours busy (each device's utilisation x hours) / accelerator hours available.",
    termFlopsWeighted: "consumed compute x hours / capacity compute x hours, each tier at its headline precision: a "
      + "busy accelerator weighs by its peak, not as one device.",
    termAllocation: "hours of compute held by Suanli's jobs / available hours (Open XDMoD's Jobs realm); the "
      + "difference to consumed is held but idle, or used outside Suanli.",
    termMethod: "each census snapshot stands for the time until the next one (at most one snapshot interval plus "
      + "one sweep interval); a longer gap, with the service down, counts as neither available nor used. "
      + "Utilisation = consumed hours / available hours (Open XDMoD).",
    termMethodLabel: "Method",
    utilDemandTitle: "Demand on the scheduler",
    jobsDispatched: "Jobs dispatched", meanWait: "Mean wait", jobsEnded: "Jobs ended", meanRun: "Mean run",
    expansionFactor: "Expansion factor", queuedNow: "Queued now", queuedWait: "Waited so far (mean)",
    utilDemandHelp: "Mean wait: from submission to dispatch, of the jobs dispatched in the window. Expansion factor: "
      + "(wait + run) / run, averaged over the jobs that ended in the window; 1 means no wait.",
    seconds: "{n} s", minutes: "{n} min", hours: "{n} h", days: "{n} d",
    utilHistoryTitle: "Capacity, allocated and consumed over time", utilChartTier: "Show",
    utilChartEmpty: "No census snapshot in this window yet.",
    utilChartLabel: "{scope}, {from} to {to}: capacity {capacity}, allocated {allocated}, consumed {consumed} at the "
      + "last snapshot.",
    utilChartNote: "{n} snapshots in the window; compute at each tier's headline precision.",
    utilRegionTitle: "Utilisation and energy by district", utilRegionNone: "No district in this area has counted nodes.",
    utilisationShort: "Utilisation (FLOPS-weighted)", power: "Power", provenance: "Provenance",
    energyKwh: "Energy (kWh)", facilityPower: "Facility power", pue: "PUE", gflopsPerWatt: "Peak GFLOPS/W",
    fp64GflopsPerWatt: "Peak FP64 GFLOPS/W", facilityEnergyKwh: "Facility energy (kWh)", powerNodes: "Nodes",
    prov_measured: "measured", prov_declared: "declared", prov_mixed: "mixed", prov_none: "none",
    powerNodesText: "{m} measured · {d} declared · {n} without", mixedPrecision: "mixed",
    termPower: "the nodes' own draw: measured where the agent's readings cover the node (RAPL, CPU package only, "
      + "plus NVML for accelerators), else the power_watts the operator declares; none: neither.",
    termFacility: "power x the site's declared PUE (x 1 where a site declares none); PUE here is facility power / "
      + "the nodes' power.",
    termGflopsPerWatt: "peak compute (Rpeak) of the nodes with a power figure / their power, at the tier's headline "
      + "precision (Green500's unit, but of peaks, not measured HPL Rmax: an upper bound).",
    termEnergy: "power x hours over the window, measured and declared together; facility energy with each site's PUE.",
    partialPower: "{n} node(s) are measured only in part (no RAPL, or accelerators without a power reading) and "
      + "declare no power: their figure is below their draw.",
    watts: "W",
  },
  zh: {
    navUtilisation: "利用率", navEnergy: "能耗",
    utilisationTitle: "利用率", energyTitle: "能耗", utilWindowLabel: "统计时段",
    window_3600: "最近 1 小时", window_86400: "最近 24 小时", window_604800: "最近 7 天", window_2592000: "最近 30 天",
    utilWindowText: "统计时段：{span}（{from} 至 {to}），共 {n} 个普查快照，覆盖 {covered}。",
    utilNowTitle: "当前各类算力的总量、已分配与已使用",
    utilNowHelp: "总量：普查计入的算力。已分配：算力调度正在运行的作业占用的资源。已使用：节点上报的实际繁忙程度。"
      + "算力按各类型的统计口径精度计。",
    compute: "算力（统计口径）", logicalCpus: "逻辑 CPU", capacity: "总量", allocated: "已分配",
    consumed: "已使用", ofCapacity: "占总量", unpriced: "未定价", usageNodes: "上报使用量的节点",
    allTiers: "全部类型",
    allocatedShareOf: "{tier}：已分配占总量 {share}", consumedShareOf: "{tier}：已使用占总量 {share}",
    unpricedHint: "未定价加速卡：{list}。这些加速卡已被发现并计数，但其型号的峰值未知（不在型号目录中），"
      + "因此在本页各项数字中算力计为 0，相应类型的算力被低估。请在节点标签中申报峰值（declared_peaks），或将该型号加入目录。",
    unpricedNone: "发现的加速卡均已定价。",
    utilRatiosTitle: "统计时段内的利用率",
    coreHours: "核时", gpuHours: "卡时", flopsWeighted: "按算力加权",
    cpuHoursUsed: "CPU 核时：已使用 / 可用", gpuHoursUsed: "加速卡卡时：已使用 / 可用",
    allocationFlops: "分配率（按算力加权）",
    termCoreHours: "统计时段内繁忙的逻辑 CPU 核时 / 可用的逻辑 CPU 核时。",
    termGpuHours: "加速卡繁忙卡时（每块卡的利用率 × 小时）/ 可用卡时。",
    termFlopsWeighted: "已使用算力 × 小时 / 总算力 × 小时，各类型按统计口径精度计：繁忙的加速卡按其峰值加权，而不是只算一块卡。",
    termAllocation: "作业占用的算力小时 / 可用算力小时（Open XDMoD 的作业口径）；与已使用之差为已占用但空闲，或在算力调度之外使用。",
    termMethod: "每个普查快照代表到下一个快照为止的时间（至多一个快照周期加一个巡检周期）；更长的间隔（服务停止）既不计入可用时间，"
      + "也不计入使用时间。利用率 = 已使用小时 / 可用小时（Open XDMoD）。",
    termMethodLabel: "计算方法",
    utilDemandTitle: "调度需求",
    jobsDispatched: "已分派作业", meanWait: "平均等待", jobsEnded: "已结束作业", meanRun: "平均运行",
    expansionFactor: "扩展因子", queuedNow: "当前排队", queuedWait: "已等待（平均）",
    utilDemandHelp: "平均等待：统计时段内分派的作业从提交到分派的时间。扩展因子：（等待 + 运行）/ 运行，"
      + "对统计时段内结束的作业取平均；1 表示无需等待。",
    seconds: "{n} 秒", minutes: "{n} 分钟", hours: "{n} 小时", days: "{n} 天",
    utilHistoryTitle: "总量、已分配与已使用的变化", utilChartTier: "显示",
    utilChartEmpty: "该统计时段内尚无普查快照。",
    utilChartLabel: "{scope}，{from} 至 {to}：最近一个快照的总量 {capacity}，已分配 {allocated}，已使用 {consumed}。",
    utilChartNote: "统计时段内 {n} 个快照；算力按各类型的统计口径精度计。",
    utilRegionTitle: "各区县利用率与能耗", utilRegionNone: "该地区没有计入节点的区县。",
    utilisationShort: "利用率（按算力加权）", power: "功率", provenance: "数据来源",
    energyKwh: "能耗（千瓦时）", facilityPower: "设施功率", pue: "PUE", gflopsPerWatt: "峰值 GFLOPS/W",
    fp64GflopsPerWatt: "FP64 峰值 GFLOPS/W", facilityEnergyKwh: "设施能耗（千瓦时）", powerNodes: "节点",
    prov_measured: "实测", prov_declared: "申报", prov_mixed: "实测与申报", prov_none: "无数据",
    powerNodesText: "实测 {m} · 申报 {d} · 无数据 {n}", mixedPrecision: "混合精度",
    termPower: "节点自身功耗：代理的读数覆盖整个节点时为实测（RAPL 仅覆盖 CPU 封装，加速卡用 NVML），否则为运维申报的 "
      + "power_watts；无数据：两者皆无。",
    termFacility: "功率 × 站点申报的 PUE（未申报的站点按 1 计）；此处 PUE = 设施功率 / 节点功率。",
    termGflopsPerWatt: "有功率数据的节点的峰值算力（Rpeak）/ 其功率，按该类型的统计口径精度计（Green500 的单位，"
      + "但用的是峰值而非实测 HPL Rmax，是上限）。",
    termEnergy: "功率 × 统计时段内的小时数，实测与申报合计；设施能耗计入各站点的 PUE。",
    partialPower: "{n} 个节点只测得部分功率（无 RAPL，或加速卡无功率读数）且未申报功率：其数字低于实际功耗。",
    watts: "W",
  },
};
for (const code of Object.keys(UTIL_I18N)) Object.assign(I18N[code], UTIL_I18N[code]);

const UTIL_WINDOWS = [3600, 86400, 604800, 2592000];
const UTIL_DEFAULT_WINDOW = 86400; // GET /v1/census's own default: the page's census answer already covers it
const LAYER_NAMES = ["capacity", "allocated", "consumed"];
const LAYER_COLOURS = { capacity: "#374151", allocated: "#2563eb", consumed: "#0f766e" };
const WATT_UNITS = [[1e9, "GW"], [1e6, "MW"], [1e3, "kW"]];
const SVG_NS = "http://www.w3.org/2000/svg";
let utilWindow = UTIL_DEFAULT_WINDOW;
let utilChartTier = "all";

// "12.50 kW", as humanFlops picks a unit.
function humanWatts(value) {
  if (value === null || value === undefined) return "–";
  for (const [scale, unit] of WATT_UNITS) {
    if (Math.abs(value) >= scale) return `${numberFormat.format(value / scale)} ${unit}`;
  }
  return `${numberFormat.format(value)} W`;
}

// A count that may be fractional (busy cores, GPUs held): "12" or "12.50".
const amount = (x) => (x === null || x === undefined ? "–" : Number.isInteger(x) ? integer(x) : numberFormat.format(x));
const decimal = (x) => (x === null || x === undefined ? "–" : numberFormat.format(x));

// "45 s", "7.50 min", "2.50 h", "3.00 d".
function humanDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 120) return t("seconds", { n: integer(seconds) });
  if (seconds < 7200) return t("minutes", { n: numberFormat.format(seconds / 60) });
  if (seconds < 172800) return t("hours", { n: numberFormat.format(seconds / 3600) });
  return t("days", { n: numberFormat.format(seconds / 86400) });
}

function windowName(seconds) {
  return UTIL_WINDOWS.includes(seconds) ? t(`window_${seconds}`) : humanDuration(seconds);
}

// A share as text with a bar under it (the bar is decoration: the text says the same).
function shareCell(share, colour) {
  const bar = el("span", { className: "bar-fill" });
  bar.style.width = `${Math.max(0, Math.min(1, share ?? 0)) * 100}%`;
  bar.style.background = colour;
  return [el("span", { className: "share-text" }, percent(share)), el("span", { className: "bar", "aria-hidden": "true" }, bar)];
}

// A table with one or two header rows; each body cell carries data-key (its column's key) for scripts and tests.
// columns: [{key, label, group?, value(row) -> text|Node|[Node], className}]; groups: [[label, span]] or null.
function fillKeyedTable(table, columns, rows, { groups = null, rowData = null, caption = null } = {}) {
  const head = el("thead");
  if (groups) {
    head.append(el("tr", {}, groups.map(([label, span]) => el("th", span > 1
      ? { scope: "colgroup", colspan: String(span), className: "group" } : { className: "group" }, label))));
  }
  head.append(el("tr", {}, columns.map((c) => el("th", { scope: "col", className: c.className || "" }, c.label))));
  const body = el("tbody");
  if (!rows.length) {
    body.append(el("tr", {}, el("td", { colspan: String(columns.length), className: "empty" }, t("empty"))));
  }
  for (const row of rows) {
    const tr = el("tr", rowData ? { dataset: rowData(row) } : {});
    for (const c of columns) {
      tr.append(el(c.key === "tier" ? "th" : "td", c.key === "tier" ? { scope: "row", dataset: { key: c.key } }
        : { className: c.className || "", dataset: { key: c.key } }, c.value(row)));
    }
    body.append(tr);
  }
  table.replaceChildren(...(caption ? [el("caption", { className: "visually-hidden" }, caption)] : []), head, body);
}

// Per tier rows and an "all tiers" row for the whole census: {tier, label, utilisation, demand, energy, unpriced}.
function utilisationRows(census) {
  const rows = census.by_tier.map((r) => ({ tier: r.tier, label: () => tierBadge(r.tier), utilisation: r.utilisation,
    demand: r.demand, energy: r.energy, unpriced: r.unpriced_accelerators }));
  rows.push({ tier: "all", label: () => t("allTiers"), utilisation: census.utilisation, demand: null,
    energy: census.energy, unpriced: census.totals.unpriced_accelerators });
  return rows;
}

function fillOptions(select, options, value) {
  select.replaceChildren(...options.map(([v, label]) => el("option", { value: v }, label)));
  select.value = value;
}

function fillTerms(id, terms) {
  $(id).replaceChildren(...terms.flatMap(([term, text]) => [el("dt", {}, term), el("dd", {}, text)]));
}

function renderUtilisation() {
  const view = views.utilisation;
  showMessage("util-status", view);
  showMessage("energy-status", view);
  fillOptions($("util-window-select"), UTIL_WINDOWS.map((s) => [String(s), windowName(s)]), String(utilWindow));
  fillOptions($("util-chart-tier"), [["all", t("allTiers")], ...TIERS.map((tier) => [tier, tierName(tier)])],
    utilChartTier);
  const census = view?.state === "ok" ? view.data : null;
  if (!census?.utilisation) {
    for (const id of ["util-now-table", "util-ratio-table", "util-demand-table", "util-region-table", "energy-table"]) {
      $(id).replaceChildren();
    }
    for (const id of ["util-window", "util-unpriced", "energy-partial", "util-region-scope"]) $(id).textContent = "";
    delete $("util-window").dataset.seconds;
    delete $("util-window").dataset.coveredSeconds;
    renderUtilisationChart();
    return;
  }
  const w = census.window;
  $("util-window").textContent = t("utilWindowText", { span: windowName(w.seconds), from: when(w.from),
    to: when(w.to), n: integer(w.snapshots), covered: humanDuration(w.covered_seconds) });
  Object.assign($("util-window").dataset, { seconds: String(w.seconds), coveredSeconds: String(w.covered_seconds) });
  const rows = utilisationRows(census);
  renderUtilisationNow(rows);
  renderUtilisationRatios(rows);
  renderUtilisationDemand(rows.filter((r) => r.demand));
  renderUtilisationRegions();
  renderEnergy(rows);
  renderUtilisationChart();
}

function renderUtilisationNow(rows) {
  const layer = (r, name) => r.utilisation[name];
  const tierLabel = (r) => (r.tier === "all" ? t("allTiers") : tierName(r.tier));
  fillKeyedTable($("util-now-table"), [
    { key: "tier", label: t("tier"), value: (r) => r.label() },
    { key: "capacity", label: t("capacity"), className: "num", value: (r) => humanFlops(layer(r, "capacity").headline_flops) },
    { key: "allocated", label: t("allocated"), className: "num", value: (r) => humanFlops(layer(r, "allocated").headline_flops) },
    { key: "allocated-share", label: t("ofCapacity"), className: "num share",
      value: (r) => shareCell(layer(r, "allocated").share_of_capacity, LAYER_COLOURS.allocated) },
    { key: "consumed", label: t("consumed"), className: "num", value: (r) => humanFlops(layer(r, "consumed").headline_flops) },
    { key: "consumed-share", label: t("ofCapacity"), className: "num share",
      value: (r) => shareCell(layer(r, "consumed").share_of_capacity, LAYER_COLOURS.consumed) },
    { key: "cpus-capacity", label: t("capacity"), className: "num", value: (r) => amount(layer(r, "capacity").cpus) },
    { key: "cpus-allocated", label: t("allocated"), className: "num", value: (r) => amount(layer(r, "allocated").cpus) },
    { key: "cpus-consumed", label: t("consumed"), className: "num", value: (r) => amount(layer(r, "consumed").cpus) },
    { key: "acc-capacity", label: t("capacity"), className: "num", value: (r) => amount(layer(r, "capacity").accelerators) },
    { key: "acc-allocated", label: t("allocated"), className: "num", value: (r) => amount(layer(r, "allocated").accelerators) },
    { key: "acc-consumed", label: t("consumed"), className: "num", value: (r) => amount(layer(r, "consumed").accelerators) },
    { key: "unpriced", label: t("unpriced"), className: "num", value: (r) => integer(r.unpriced) },
    { key: "usage-nodes", label: t("usageNodes"), className: "num", value: (r) => integer(r.utilisation.nodes_reporting_usage) },
  ], rows, {
    groups: [["", 1], [t("compute"), 5], [t("logicalCpus"), 3], [t("accelerators"), 4], ["", 1]],
    rowData: (r) => ({ tier: r.tier }),
    caption: t("utilNowTitle"),
  });
  // The bars' meaning for assistive technology (the bars themselves are hidden from it).
  for (const row of $("util-now-table").querySelectorAll("tbody tr[data-tier]")) {
    const r = rows.find((x) => x.tier === row.dataset.tier);
    row.querySelector("[data-key='allocated-share']").setAttribute("aria-label",
      t("allocatedShareOf", { tier: tierLabel(r), share: percent(layer(r, "allocated").share_of_capacity) }));
    row.querySelector("[data-key='consumed-share']").setAttribute("aria-label",
      t("consumedShareOf", { tier: tierLabel(r), share: percent(layer(r, "consumed").share_of_capacity) }));
  }
  const unpriced = rows.filter((r) => r.tier !== "all" && r.unpriced > 0);
  $("util-unpriced").textContent = unpriced.length
    ? t("unpricedHint", { list: unpriced.map((r) => `${tierName(r.tier)} ${integer(r.unpriced)}`).join(", ") })
    : t("unpricedNone");
  $("util-unpriced").classList.toggle("warning", unpriced.length > 0);
}

function renderUtilisationRatios(rows) {
  const u = (r) => r.utilisation;
  fillKeyedTable($("util-ratio-table"), [
    { key: "tier", label: t("tier"), value: (r) => r.label() },
    { key: "cpu-hours", label: t("cpuHoursUsed"), className: "num",
      value: (r) => `${decimal(u(r).consumed_hours.cpu_hours)} / ${decimal(u(r).capacity_hours.cpu_hours)}` },
    { key: "core-hours", label: t("coreHours"), className: "num", value: (r) => percent(u(r).utilisation.cpu) },
    { key: "acc-hours", label: t("gpuHoursUsed"), className: "num",
      value: (r) => `${decimal(u(r).consumed_hours.accelerator_hours)} / ${decimal(u(r).capacity_hours.accelerator_hours)}` },
    { key: "gpu-hours", label: t("gpuHours"), className: "num", value: (r) => percent(u(r).utilisation.accelerators) },
    { key: "flops-weighted", label: t("flopsWeighted"), className: "num", value: (r) => percent(u(r).utilisation.compute) },
    { key: "allocation", label: t("allocationFlops"), className: "num", value: (r) => percent(u(r).allocation.compute) },
  ], rows, { rowData: (r) => ({ tier: r.tier }), caption: t("utilRatiosTitle") });
  fillTerms("util-ratio-terms", [
    [t("coreHours"), t("termCoreHours")], [t("gpuHours"), t("termGpuHours")],
    [t("flopsWeighted"), t("termFlopsWeighted")], [t("allocationFlops"), t("termAllocation")],
    [t("termMethodLabel"), t("termMethod")],
  ]);
}

function renderUtilisationDemand(rows) {
  const d = (r) => r.demand;
  fillKeyedTable($("util-demand-table"), [
    { key: "tier", label: t("tier"), value: (r) => r.label() },
    { key: "dispatched", label: t("jobsDispatched"), className: "num", value: (r) => integer(d(r).jobs_dispatched) },
    { key: "mean-wait", label: t("meanWait"), className: "num", value: (r) => humanDuration(d(r).mean_wait_seconds) },
    { key: "ended", label: t("jobsEnded"), className: "num", value: (r) => integer(d(r).jobs_finished) },
    { key: "mean-run", label: t("meanRun"), className: "num", value: (r) => humanDuration(d(r).mean_run_seconds) },
    { key: "expansion", label: t("expansionFactor"), className: "num", value: (r) => decimal(d(r).expansion_factor) },
    { key: "queued", label: t("queuedNow"), className: "num", value: (r) => integer(d(r).queued_now) },
    { key: "queued-wait", label: t("queuedWait"), className: "num",
      value: (r) => humanDuration(d(r).mean_queued_wait_seconds) },
  ], rows, { rowData: (r) => ({ tier: r.tier }), caption: t("utilDemandTitle") });
}

function provenanceLabel(power) {
  return el("span", { className: `prov prov-${power.provenance}` }, t(`prov_${power.provenance}`));
}

function renderUtilisationRegions() {
  const census = views.utilisation?.state === "ok" ? views.utilisation.data : null;
  if (!census?.utilisation) return;
  const scope = regionsByCode().get(scopeCode);
  $("util-region-scope").textContent = scope ? `· ${regionName(scope)}` : "";
  const byCode = new Map(census.by_region.map((r) => [r.code, r]));
  const districts = districtsOf(views.census?.data ?? census, scopeCode)
    .map((r) => byCode.get(r.code)).filter((r) => r && r.nodes > 0)
    .sort((a, b) => b.utilisation.capacity.headline_flops - a.utilisation.capacity.headline_flops);
  fillKeyedTable($("util-region-table"), [
    { key: "name", label: t("district"), value: (r) => regionName(r) },
    { key: "code", label: t("code"), value: (r) => r.code },
    { key: "nodes", label: t("nodes"), className: "num", value: (r) => integer(r.nodes) },
    { key: "capacity", label: t("capacity"), className: "num", value: (r) => humanFlops(r.utilisation.capacity.headline_flops) },
    { key: "allocated-share", label: `${t("allocated")} (${t("ofCapacity")})`, className: "num",
      value: (r) => percent(r.utilisation.allocated.share_of_capacity) },
    { key: "consumed-share", label: `${t("consumed")} (${t("ofCapacity")})`, className: "num",
      value: (r) => percent(r.utilisation.consumed.share_of_capacity) },
    { key: "utilisation", label: t("utilisationShort"), className: "num", value: (r) => percent(r.utilisation.utilisation.compute) },
    { key: "power", label: t("power"), className: "num", value: (r) => humanWatts(r.energy.power.watts) },
    { key: "provenance", label: t("provenance"), value: (r) => provenanceLabel(r.energy.power) },
    { key: "energy", label: t("energyKwh"), className: "num", value: (r) => decimal(r.energy.energy_kwh) },
  ], districts, { rowData: (r) => ({ code: r.code }), caption: t("utilRegionTitle") });
  if (!districts.length) $("util-region-table").querySelector("td.empty").textContent = t("utilRegionNone");
}

function renderEnergy(rows) {
  const e = (r) => r.energy;
  const pue = (p) => (p.watts > 0 ? decimal(p.facility_watts / p.watts) : "–");
  const efficiency = (r, value) => (value === null || value === undefined ? "–"
    : `${decimal(value)} ${e(r).headline_precision ?? t("mixedPrecision")}`);
  fillKeyedTable($("energy-table"), [
    { key: "tier", label: t("tier"), value: (r) => r.label() },
    { key: "power", label: t("power"), className: "num", value: (r) => humanWatts(e(r).power.watts) },
    { key: "provenance", label: t("provenance"), value: (r) => provenanceLabel(e(r).power) },
    { key: "power-nodes", label: t("powerNodes"), value: (r) => t("powerNodesText", { m: integer(e(r).power.measured_nodes),
      d: integer(e(r).power.declared_nodes), n: integer(e(r).power.nodes_without_power) }) },
    { key: "facility", label: t("facilityPower"), className: "num", value: (r) => humanWatts(e(r).power.facility_watts) },
    { key: "pue", label: t("pue"), className: "num", value: (r) => pue(e(r).power) },
    { key: "gflops-per-watt", label: t("gflopsPerWatt"), className: "num",
      value: (r) => efficiency(r, e(r).peak_gflops_per_watt) },
    { key: "fp64-gflops-per-watt", label: t("fp64GflopsPerWatt"), className: "num",
      value: (r) => decimal(e(r).peak_fp64_gflops_per_watt) },
    { key: "energy", label: t("energyKwh"), className: "num", value: (r) => decimal(e(r).energy_kwh) },
    { key: "facility-energy", label: t("facilityEnergyKwh"), className: "num", value: (r) => decimal(e(r).facility_energy_kwh) },
  ], rows, { rowData: (r) => ({ tier: r.tier, provenance: e(r).power.provenance }), caption: t("energyTitle") });
  fillTerms("energy-terms", [
    [t("power"), t("termPower")], [t("facilityPower"), t("termFacility")],
    [t("gflopsPerWatt"), t("termGflopsPerWatt")], [t("energyKwh"), t("termEnergy")],
  ]);
  const partial = rows.find((r) => r.tier === "all")?.energy.power.partially_measured_nodes ?? 0;
  $("energy-partial").textContent = partial ? t("partialPower", { n: integer(partial) }) : "";
}

function svg(tag, attributes = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

// The three layers (headline FLOPS) of the chosen tier, or of the whole census, at each history point in the
// census's window; drawn as SVG lines with a title per point.
function renderUtilisationChart() {
  const box = $("util-chart");
  const census = views.utilisation?.state === "ok" ? views.utilisation.data : null;
  const history = views.history?.state === "ok" ? views.history.data : null;
  const legend = $("util-chart-legend");
  legend.replaceChildren(...LAYER_NAMES.map((name) => {
    const swatch = el("span", { className: "swatch", "aria-hidden": "true" });
    swatch.style.background = LAYER_COLOURS[name];
    return el("li", {}, swatch, t(name));
  }));
  $("util-chart-note").textContent = "";
  if (!census?.window || !history) {
    box.replaceChildren();
    return;
  }
  const since = Date.parse(census.window.from);
  const layersOf = (p) => (utilChartTier === "all" ? p.layers : p.by_tier_layers?.[utilChartTier]);
  const points = history.points.filter((p) => Date.parse(p.taken_at) >= since && layersOf(p));
  if (!points.length) {
    box.replaceChildren(el("p", { className: "note" }, t("utilChartEmpty")));
    return;
  }
  const series = Object.fromEntries(LAYER_NAMES.map((name) => [name,
    points.map((p) => layersOf(p)[`${name}_headline_flops`])]));
  const times = points.map((p) => Date.parse(p.taken_at));
  const unit = flopsUnit(Object.values(series).flat());
  const top = Math.max(...Object.values(series).flat(), 0) / unit.scale || 1;
  const [width, height, left, right, topPad, bottom] = [720, 260, 64, 16, 26, 34];
  const [t0, t1] = [times[0], times[times.length - 1]];
  const x = (time) => left + (t1 > t0 ? (time - t0) / (t1 - t0) : 0.5) * (width - left - right);
  const y = (value) => topPad + (1 - value / unit.scale / top) * (height - topPad - bottom);
  const scopeName = utilChartTier === "all" ? t("allTiers") : tierName(utilChartTier);
  const last = (name) => humanFlops(series[name][series[name].length - 1]);
  const label = t("utilChartLabel", { scope: scopeName, from: when(points[0].taken_at),
    to: when(points[points.length - 1].taken_at), capacity: last("capacity"), allocated: last("allocated"),
    consumed: last("consumed") });
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "util-chart-title",
    class: "line-chart" });
  chart.append(svg("title", { id: "util-chart-title" }, label));
  for (const fraction of [0, 0.5, 1]) {
    const value = top * fraction;
    chart.append(svg("line", { x1: left, x2: width - right, y1: y(value * unit.scale), y2: y(value * unit.scale),
      class: "grid-line" }));
    chart.append(svg("text", { x: left - 6, y: y(value * unit.scale) + 4, "text-anchor": "end", class: "tick" },
      `${decimal(value)}`));
  }
  chart.append(svg("text", { x: left - 6, y: 12, "text-anchor": "end", class: "tick unit" }, unit.unit));
  chart.append(svg("text", { x: left, y: height - 10, class: "tick" }, when(points[0].taken_at)));
  chart.append(svg("text", { x: width - right, y: height - 10, "text-anchor": "end", class: "tick" },
    when(points[points.length - 1].taken_at)));
  for (const name of LAYER_NAMES) {
    const values = series[name];
    const coordinates = values.map((v, i) => `${x(times[i]).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    const group = svg("g", { "data-layer": name, "data-last": String(values[values.length - 1]) });
    group.append(svg("polyline", { points: coordinates, fill: "none", stroke: LAYER_COLOURS[name],
      "stroke-width": 2, "vector-effect": "non-scaling-stroke" }));
    if (values.length <= 200) {
      values.forEach((v, i) => {
        const dot = svg("circle", { cx: x(times[i]).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: LAYER_COLOURS[name] });
        dot.append(svg("title", {}, `${t(name)} · ${when(points[i].taken_at)}: ${humanFlops(v)}`));
        group.append(dot);
      });
    }
    chart.append(group);
  }
  box.replaceChildren(chart);
  $("util-chart-note").textContent = t("utilChartNote", { n: integer(points.length) });
}

let utilRequest = 0;

// The census over the chosen window: the page's own census answer when it is the API's default window. An answer
// to an older request (the window changed meanwhile) is dropped. False when signed out.
async function loadUtilisation() {
  const request = ++utilRequest;
  if (utilWindow === UTIL_DEFAULT_WINDOW && views.census) {
    views.utilisation = views.census;
  } else {
    let result;
    try {
      result = { state: "ok", data: await api("/v1/census", { window: utilWindow }) };
    } catch (error) {
      if (request !== utilRequest) return true;
      if (error instanceof ApiError && error.status === 401) {
        signOut(`${t("badToken")}: ${error.detail}`);
        return false;
      }
      result = { state: error.status === 403 ? "forbidden" : "error", data: null, detail: error.detail || String(error) };
    }
    if (request !== utilRequest) return true;
    views.utilisation = result;
  }
  renderUtilisation();
  return true;
}

function startUtilisation() {
  $("util-window-select").addEventListener("change", async () => {
    utilWindow = Number($("util-window-select").value);
    await loadUtilisation();
  });
  $("util-chart-tier").addEventListener("change", () => {
    utilChartTier = $("util-chart-tier").value;
    renderUtilisationChart();
  });
  $("scope").addEventListener("change", renderUtilisationRegions);
}
// ==== /utilisation and energy =====================================================================================

// ---- page flow --------------------------------------------------------------------------------------------

function renderAll() {
  renderCensus();
  renderHistory();
  renderRegions();
  renderNodeFilters();
  renderNodes();
  renderTiers();
  renderJobs();
  renderUtilisation(); // utilisation and energy (issue 15)
}

async function loadAll() {
  document.body.dataset.loaded = "false";
  if (!(await load("census", () => api("/v1/census")))) return; // signed out
  renderCensus();
  renderRegions();
  renderNodeFilters();
  const signedIn = await Promise.all([
    load("history", () => api("/v1/census/history")).then((ok) => ok && (renderHistory(), true)),
    loadNodes().then(() => Boolean(sessionStorage.getItem(TOKEN_KEY))),
    load("tiers", () => api("/v1/tiers")).then((ok) => ok && (renderTiers(), true)),
    load("jobs", loadJobs).then((ok) => ok && (renderJobs(), true)),
    loadUtilisation(), // utilisation and energy (issue 15)
  ]);
  renderUtilisationChart(); // utilisation and energy: its line chart, now that the history has come
  if (signedIn.every(Boolean)) document.body.dataset.loaded = "true";
}

function showDashboard(visible) {
  $("login").hidden = visible;
  $("dashboard").hidden = !visible;
  $("nav").hidden = !visible;
  $("logout").hidden = !visible;
  $("refresh").hidden = !visible;
}

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  for (const key of Object.keys(views)) delete views[key];
  showDashboard(false);
  $("login-error").hidden = !message;
  $("login-error").textContent = message;
  $("token").value = "";
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) {
    $("login-error").hidden = false;
    $("login-error").textContent = t("tokenMissing");
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login-error").hidden = true;
  $("token").value = "";
  nodePaging.cursors = [null];
  nodePaging.page = 0;
  showDashboard(true);
  await loadAll();
}

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  $("lang").textContent = t("langButton");
  $("lang").setAttribute("lang", lang === "zh" ? "en" : "zh-CN");
  document.title = `Suanli 算力 · ${t("title")}`;
  if (!$("dashboard").hidden) renderAll();
}

function restartNodes() {
  nodePaging.cursors = [null];
  nodePaging.page = 0;
  loadNodes();
}

function start() {
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", () => signOut());
  $("refresh").addEventListener("click", () => loadAll());
  $("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem(LANG_KEY, lang);
    applyLanguage();
  });
  $("scope").addEventListener("change", () => {
    scopeCode = $("scope").value;
    renderCensus();
    renderRegions();
  });
  $("node-filters").addEventListener("change", restartNodes);
  $("node-filters").addEventListener("submit", (event) => event.preventDefault());
  $("nodes-next").addEventListener("click", () => {
    const next = views.nodes?.data?.next_after;
    if (!next) return;
    nodePaging.cursors[nodePaging.page + 1] = next;
    nodePaging.page += 1;
    loadNodes();
  });
  $("nodes-prev").addEventListener("click", () => {
    if (nodePaging.page === 0) return;
    nodePaging.page -= 1;
    loadNodes();
  });
  startUtilisation(); // utilisation and energy (issue 15)
  applyLanguage();
  if (sessionStorage.getItem(TOKEN_KEY)) {
    showDashboard(true);
    loadAll();
  } else {
    showDashboard(false);
  }
}

start();
