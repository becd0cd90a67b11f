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

async function api(path, params = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
  }
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  let response;
  try {
    response = await fetch(url, {
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
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

// ---- page flow --------------------------------------------------------------------------------------------

function renderAll() {
  renderCensus();
  renderHistory();
  renderRegions();
  renderNodeFilters();
  renderNodes();
  renderTiers();
  renderJobs();
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
  ]);
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
  applyLanguage();
  if (sessionStorage.getItem(TOKEN_KEY)) {
    showDashboard(true);
    loadAll();
  } else {
    showDashboard(false);
  }
}

start();
