// Suanli dashboard, planners' questions: what the headline is (its label and the AI share beside the national
// target), what if planned machines were added (POST /v1/census/plan: before and after, nothing stored), and when
// a target is reached (GET /v1/census/projection).
//
// Loaded after app.js, whose helpers it uses (api, t, el, $, humanFlops, percent, when, regionName, tierBadge, fillTable,
// showMessage, signOut, views, scopeCode, lang, I18N, ApiError); it adds its own strings to I18N. Same rules:
// values from the API go into the page as text only, requests go to this origin only with the tab's token. A plan
// is data typed or uploaded by the planner and sent as JSON; the page never names a file on the server.
"use strict";

(() => {
  Object.assign(I18N.en, {
    navPlanning: "Planning", aiShare: "AI share of compute",
    aiShareTarget: "national target {target} by 2025 · {gap}", aiShareReached: "target reached",
    aiShareShort: "{pp} points short",
    whatIf: "What if: planned machines",
    whatIfHelp: "Paste or upload a plan: {\"machines\": [{\"count\": 10, \"region\": \"440106\", \"inventory\": {…}}]}, "
      + "each inventory the document census-agent estimate reads. Nothing is stored.",
    planInput: "Plan (JSON)", planFile: "Upload", planRun: "Show before and after",
    planRegions: "Regions the plan changes", planMachines: "Planned machines, as priced",
    planned: "{n} machine(s) of {k} kind(s) added; nothing stored.", planEmpty: "Paste or upload a plan first.",
    planBadJson: "The plan is not valid JSON: {detail}", planRunning: "Pricing the plan…",
    before: "Before", after: "After", change: "Change", count: "Count", perMachine: "Per machine", added: "Added",
    headlineRow: "Total compute", aiShareRow: "AI share (target {target})",
    perCapitaBefore: "Per person before", perCapitaAfter: "Per person after",
    aiShareBefore: "AI share before", aiShareAfter: "AI share after",
    projectionTitle: "When: growth and targets", targetTotal: "Target total", targetPerCapita: "Target per person",
    method: "Fit", methodExponential: "exponential", methodLinear: "linear", projectionRun: "Project",
    series: "Series", last: "Latest", growthPerYear: "Growth a year", doubling: "Doubling time", days: "{n} days",
    underADay: "under a day",
    rSquared: "r²", points: "Snapshots",
    tooFew: "too few snapshots ({n}); a fit needs at least {min}",
    methodNote: "{method} least-squares fit on the snapshots of {area}; a fit needs at least {min}.",
    wholeCensus: "the whole census", targetReached: "{label} {target}: reached on {date} (by the fit)",
    targetAlready: "{label} {target}: already reached", targetNone: "{label} {target}: no date ({reason})",
    targetBad: "Not a FLOPS figure: {text} (e.g. 300 EFLOPS, 3e20, 12.5T)",
    targetTotalLabel: "Total", targetPerCapitaLabel: "Per person",
  });
  Object.assign(I18N.zh, {
    navPlanning: "规划", aiShare: "智能算力占比",
    aiShareTarget: "国家目标：2025 年达到 {target} · {gap}", aiShareReached: "已达到目标",
    aiShareShort: "差 {pp} 个百分点",
    whatIf: "假设：规划新增设备",
    whatIfHelp: "粘贴或上传规划：{\"machines\": [{\"count\": 10, \"region\": \"440106\", \"inventory\": {…}}]}，"
      + "每台设备的清单即 census-agent estimate 读取的文档。不保存任何数据。",
    planInput: "规划（JSON）", planFile: "上传", planRun: "对比规划前后",
    planRegions: "受影响的地区", planMachines: "规划设备（核算结果）",
    planned: "新增 {k} 类共 {n} 台设备；不保存任何数据。", planEmpty: "请先粘贴或上传规划。",
    planBadJson: "规划不是有效的 JSON：{detail}", planRunning: "正在核算规划…",
    before: "规划前", after: "规划后", change: "变化", count: "数量", perMachine: "单台", added: "新增",
    headlineRow: "算力总规模", aiShareRow: "智能算力占比（目标 {target}）",
    perCapitaBefore: "规划前人均", perCapitaAfter: "规划后人均",
    aiShareBefore: "规划前智能算力占比", aiShareAfter: "规划后智能算力占比",
    projectionTitle: "何时达标：增长与目标", targetTotal: "目标总算力", targetPerCapita: "目标人均算力",
    method: "拟合", methodExponential: "指数", methodLinear: "线性", projectionRun: "预测",
    series: "序列", last: "最新", growthPerYear: "年增长率", doubling: "翻倍时间", days: "{n} 天",
    underADay: "不到 1 天",
    rSquared: "r²", points: "快照数",
    tooFew: "快照不足（{n} 个），拟合至少需要 {min} 个",
    methodNote: "对{area}的快照做{method}最小二乘拟合；拟合至少需要 {min} 个快照。",
    wholeCensus: "全部普查范围", targetReached: "{label} {target}：按拟合将于 {date} 达到",
    targetAlready: "{label} {target}：已达到", targetNone: "{label} {target}：无法给出日期（{reason}）",
    targetBad: "不是有效的算力数值：{text}（例如 300 EFLOPS、3e20、12.5T）",
    targetTotalLabel: "总算力", targetPerCapitaLabel: "人均算力",
  });

  const PREFIXES = { "": 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18, Z: 1e21 };
  const FLOPS_TEXT = /^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGTPEZ]?)(?:FLOPS)?\s*$/i;
  const state = { plan: null, planError: null, projection: null, projectionError: null };
  // Each load takes a ticket; an answer whose ticket is no longer the latest is dropped, so a slow earlier
  // request (an automatic refresh, a double click) never paints over the answer to the one asked last.
  const latest = { plan: 0, projection: 0 };

  // "300 EFLOPS", "3e20", "12.5T" as FLOPS (as `suanli census --target-total` reads them); null when empty.
  function parseFlops(text) {
    if (!text.trim()) return null;
    const match = FLOPS_TEXT.exec(text);
    const value = match ? Number(match[1]) * PREFIXES[match[2].toUpperCase()] : NaN;
    if (!(value > 0)) throw new Error(t("targetBad", { text }));
    return value;
  }

  const shareText = (x) => percent(x);
  const flopsChange = (a, b) => (b >= a ? `+${humanFlops(b - a)}` : `−${humanFlops(a - b)}`);

  // An error as a view for showMessage; a 401 signs out (as app.js does). Null when signed out.
  function failure(error) {
    if (error instanceof ApiError && error.status === 401) {
      signOut(`${t("badToken")}: ${error.detail}`);
      return null;
    }
    const forbidden = error instanceof ApiError && error.status === 403;
    return { state: forbidden ? "forbidden" : "error", detail: error.detail || error.message || String(error) };
  }

  // ---- the headline's label and the AI share --------------------------------------------------------------

  function renderHeadline() {
    const head = views.census?.data?.headline;
    if (!head || head.label_en === undefined) {
      $("headline-label").textContent = "";
      $("ai-share").textContent = "–";
      $("ai-share-target").textContent = "";
      return;
    }
    $("headline-label").textContent = lang === "zh" ? head.label_zh : head.label_en;
    const share = head.ai_share;
    $("ai-share").textContent = shareText(share);
    const gap = share === null ? "–" : share >= head.ai_share_target ? t("aiShareReached")
      : t("aiShareShort", { pp: (100 * (head.ai_share_target - share)).toFixed(1) });
    $("ai-share-target").textContent = t("aiShareTarget", { target: shareText(head.ai_share_target), gap });
    $("ai-share-target").title = head.ai_share_target_source;
    Object.assign($("ai-share").dataset, { share: String(share), target: String(head.ai_share_target) });
  }

  // ---- what if ---------------------------------------------------------------------------------------------

  function renderPlan() {
    const view = state.planError ? state.planError : state.plan ? { state: "ok" } : null;
    showMessage("plan-status", view);
    const doc = state.plan;
    $("plan-result").hidden = !doc;
    if (!doc) return;
    if (view.state === "ok") {
      const status = $("plan-status");
      status.hidden = false;
      status.textContent = t("planned", { n: integer(doc.added.machines), k: integer(doc.added.kinds) });
    }
    const before = doc.before.headline;
    const after = doc.after.headline;
    const rows = [
      { key: "headline", label: t("headlineRow"), before: before.flops, after: after.flops, kind: "flops" },
      { key: "ai_share", label: t("aiShareRow", { target: shareText(after.ai_share_target) }), before: before.ai_share,
        after: after.ai_share, kind: "share" },
      ...doc.after.by_tier.map((tier, i) => ({
        key: tier.tier, label: `${tierName(tier.tier)} (${tier.headline_precision})`,
        before: doc.before.by_tier[i].headline_flops, after: tier.headline_flops, kind: "flops",
      })),
    ];
    const shown = (row, value) => (row.kind === "share" ? shareText(value) : humanFlops(value));
    fillTable($("plan-summary"), [
      { key: "label", label: "", value: (r) => r.label },
      { key: "before", label: t("before"), value: (r) => shown(r, r.before), className: "num" },
      { key: "after", label: t("after"), value: (r) => shown(r, r.after), className: "num" },
      { key: "change", label: t("change"), className: "num",
        value: (r) => (r.kind === "share" ? (r.before === null || r.after === null ? "–"
          : `${(100 * (r.after - r.before)).toFixed(1)} pp`) : flopsChange(r.before, r.after)) },
    ], rows, { rowData: (r) => ({ row: r.key, before: String(r.before), after: String(r.after) }) });

    fillTable($("plan-regions"), [
      { key: "name", label: t("region"), value: (r) => regionName(r) },
      { key: "code", label: t("code"), value: (r) => r.code },
      { key: "before", label: t("before"), value: (r) => humanFlops(r.before.headline_flops), className: "num" },
      { key: "after", label: t("after"), value: (r) => humanFlops(r.after.headline_flops), className: "num" },
      { key: "pcb", label: t("perCapitaBefore"), value: (r) => humanFlops(r.before.per_capita_headline_flops),
        className: "num" },
      { key: "pca", label: t("perCapitaAfter"), value: (r) => humanFlops(r.after.per_capita_headline_flops),
        className: "num" },
      { key: "aib", label: t("aiShareBefore"), value: (r) => shareText(r.before.ai_share), className: "num" },
      { key: "aia", label: t("aiShareAfter"), value: (r) => shareText(r.after.ai_share), className: "num" },
    ], doc.changes, {
      rowData: (r) => ({ code: r.code, before: String(r.before.headline_flops), after: String(r.after.headline_flops),
        perCapitaAfter: String(r.after.per_capita_headline_flops) }),
    });

    fillTable($("plan-machines"), [
      { key: "name", label: t("name"), value: (m) => m.name || "–" },
      { key: "count", label: t("count"), value: (m) => integer(m.count), className: "num" },
      { key: "region", label: t("region"), value: (m) => m.region },
      { key: "tier", label: t("tier"), value: (m) => tierBadge(m.tier) },
      { key: "per", label: t("perMachine"), className: "num",
        value: (m) => `${humanFlops(m.per_machine_headline_flops)} ${m.headline_precision}` },
      { key: "added", label: t("added"), value: (m) => humanFlops(m.added_headline_flops), className: "num" },
    ], doc.machines, { rowData: (m) => ({ tier: m.tier }) });
  }

  async function runPlan(event) {
    event.preventDefault();
    const text = $("plan-input").value;
    state.plan = null;
    if (!text.trim()) {
      state.planError = { state: "error", detail: t("planEmpty") };
      renderPlan();
      return;
    }
    try {
      JSON.parse(text);
    } catch (error) {
      state.planError = { state: "error", detail: t("planBadJson", { detail: error.message }) };
      renderPlan();
      return;
    }
    state.planError = { state: "loading" };
    renderPlan();
    $("plan-result").dataset.loaded = "false";
    const ticket = ++latest.plan;
    let answer = null;
    let problem = null;
    try {
      answer = await api("/v1/census/plan", { region: scopeCode }, { method: "POST", body: text });
    } catch (error) {
      problem = error;
    }
    if (ticket !== latest.plan) return;
    state.plan = answer;
    state.planError = problem ? failure(problem) : null;
    if (problem && !state.planError) return;
    renderPlan();
    $("plan-result").dataset.loaded = "true";
  }

  function uploadPlan() {
    const file = $("plan-file").files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => { $("plan-input").value = String(reader.result); };
    reader.readAsText(file);
  }

  // ---- when ------------------------------------------------------------------------------------------------

  function seriesRow(key, label, series, minimum) {
    const fit = series.fit;
    return { key, label, last: series.last_flops, fit, reason: fit ? null : series.reason, minimum };
  }

  function noFitText(row) {
    const match = /^too few .* to fit: (\d+)/.exec(row.reason || "");
    return match ? t("tooFew", { n: match[1], min: row.minimum }) : row.reason || "–";
  }

  function doublingText(days) {
    if (days === null || days === undefined) return "–";
    return days < 1 ? t("underADay") : t("days", { n: integer(days) });
  }

  function renderProjection() {
    showMessage("projection-status", state.projectionError);
    const doc = state.projection;
    if (!doc) {
      $("projection-table").replaceChildren();
      $("projection-targets").replaceChildren();
      $("projection-method-note").textContent = "";
      return;
    }
    const area = doc.region ? regionName(regionsByCode().get(doc.region)) || doc.region : t("wholeCensus");
    $("projection-method-note").textContent = t("methodNote", {
      method: t(doc.method === "linear" ? "methodLinear" : "methodExponential"), area, min: doc.min_points,
    });
    $("projection-method-note").title = doc.description;
    const rows = [
      seriesRow("total", t("headlineRow"), doc.total, doc.min_points),
      ...TIERS.map((tier) => seriesRow(tier, tierName(tier), doc.by_tier[tier], doc.min_points)),
    ];
    fillTable($("projection-table"), [
      { key: "series", label: t("series"), value: (r) => r.label },
      { key: "last", label: t("last"), value: (r) => humanFlops(r.last), className: "num" },
      { key: "growth", label: t("growthPerYear"), className: "num",
        value: (r) => (r.fit ? shareText(r.fit.growth_per_year) : noFitText(r)) },
      { key: "doubling", label: t("doubling"), className: "num",
        value: (r) => doublingText(r.fit?.doubling_days) },
      { key: "r2", label: t("rSquared"), className: "num",
        value: (r) => (r.fit?.r_squared !== null && r.fit?.r_squared !== undefined ? r.fit.r_squared.toFixed(4) : "–") },
      { key: "points", label: t("points"), value: (r) => (r.fit ? integer(r.fit.points) : "–"), className: "num" },
    ], rows, { rowData: (r) => ({ series: r.key, growth: String(r.fit ? r.fit.growth_per_year : "") }) });
    $("projection-targets").replaceChildren(...doc.targets.map((target) => {
      const values = {
        label: t(target.kind === "total_flops" ? "targetTotalLabel" : "targetPerCapitaLabel"),
        target: humanFlops(target.target),
      };
      let text;
      if (target.already_reached) text = t("targetAlready", values);
      else if (target.reached_at) text = t("targetReached", { ...values, date: when(target.reached_at) });
      else text = t("targetNone", { ...values, reason: target.reason });
      return el("li", { dataset: { kind: target.kind, reachedAt: target.reached_at || "" } }, text);
    }));
  }

  async function loadProjection(event) {
    if (event) event.preventDefault();
    let params;
    try {
      params = {
        region: scopeCode, method: $("projection-method").value,
        target_total_flops: parseFlops($("projection-total").value),
        target_per_capita_flops: parseFlops($("projection-per-capita").value),
      };
    } catch (error) {
      state.projectionError = { state: "error", detail: error.message };
      renderProjection();
      return;
    }
    $("projection-table").dataset.loaded = "false";
    const ticket = ++latest.projection;
    let answer = null;
    let problem = null;
    try {
      answer = await api("/v1/census/projection", params);
    } catch (error) {
      problem = error;
    }
    if (ticket !== latest.projection) return;
    state.projection = answer;
    state.projectionError = problem ? failure(problem) : null;
    if (problem && !state.projectionError) return;
    renderProjection();
    $("projection-table").dataset.loaded = "true";
  }

  // ---- wiring ----------------------------------------------------------------------------------------------

  function translate() {
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  }

  function renderAllPlanning() {
    renderHeadline();
    renderPlan();
    renderProjection();
  }

  function clearPlanning() {
    latest.plan += 1; // answers still on their way belong to the previous session
    latest.projection += 1;
    Object.assign(state, { plan: null, planError: null, projection: null, projectionError: null });
    renderAllPlanning();
  }

  translate(); // app.js translated the page before these strings existed
  $("plan-form").addEventListener("submit", runPlan);
  $("plan-file").addEventListener("change", uploadPlan);
  $("projection-form").addEventListener("submit", loadProjection);
  $("scope").addEventListener("change", () => { if (state.projection) loadProjection(); });
  $("lang").addEventListener("click", () => { translate(); renderAllPlanning(); });
  $("login-form").addEventListener("submit", clearPlanning);
  $("logout").addEventListener("click", clearPlanning);
  // app.js marks <body data-loaded="true"> once every view has answered: the census is there to label.
  new MutationObserver(() => {
    if (document.body.dataset.loaded === "true") {
      renderHeadline();
      loadProjection();
    }
  }).observe(document.body, { attributes: true, attributeFilter: ["data-loaded"] });
  if (document.body.dataset.loaded === "true") {
    renderHeadline();
    loadProjection();
  }
})();
