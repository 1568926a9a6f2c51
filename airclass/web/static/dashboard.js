// Dashboard: teacher sign-in → /api/dashboard (Bearer teacher token) every few seconds.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const t = (key, vars) => window.I18N.t(key, vars);
  const REFRESH_MS = 3000;
  const page = { token: null, data: null, updatedAt: null, polls: 0, error: null, timer: null };
  window.airclass = page;

  function savedToken() {
    try {
      const saved = JSON.parse(sessionStorage.getItem("airclass.teacher") || "null");
      if (saved && saved.token && saved.expires_at * 1000 > Date.now() + 60000) return saved.token;
    } catch (err) { /* ignore */ }
    return null;
  }

  async function signin(event) {
    event.preventDefault();
    $("signin-error").textContent = "";
    $("signin").disabled = true;
    try {
      const reply = await window.postJson("/api/token", {
        user_type: "teacher", user_id: "dashboard", password: $("password").value, stream: window.streamFromQuery(),
      });
      // The read token: the publish token is short-lived and this page does not renew it.
      const token = reply.read_token || reply.token;
      const expiresAt = reply.read_expires_at || reply.expires_at;
      sessionStorage.setItem("airclass.teacher", JSON.stringify({ token, expires_at: expiresAt }));
      $("password").value = "";
      begin(token);
    } catch (err) {
      $("signin-error").textContent = err.status === 401 ? t("err.password")
        : err.status === 429 ? t("err.rate") : err.status === 0 ? t("err.network")
        : err.status === 403 ? t("err.teacher_disabled") : err.message;
    } finally {
      $("signin").disabled = false;
    }
  }

  function begin(token) {
    page.token = token;
    $("signin-view").classList.add("hidden");
    $("dash-view").classList.remove("hidden");
    refresh();
  }

  async function refresh() {
    clearTimeout(page.timer);
    try {
      const res = await fetch("/api/dashboard", { cache: "no-store", headers: { Authorization: "Bearer " + page.token } });
      if (res.status === 401 || res.status === 403) {
        sessionStorage.removeItem("airclass.teacher");
        $("dash-view").classList.add("hidden");
        $("signin-view").classList.remove("hidden");
        return;
      }
      if (!res.ok) throw new Error(String(res.status));
      page.data = await res.json();
      page.updatedAt = new Date();
      page.error = null;
      page.polls++;
    } catch (err) {
      page.error = String(err);
    }
    render();
    page.timer = setTimeout(refresh, REFRESH_MS);
  }

  function mbps(bytesPerSecond) {
    return bytesPerSecond == null ? "–" : (bytesPerSecond * 8 / 1e6).toFixed(1) + " Mbit/s";
  }

  function ago(iso) {
    const when = Date.parse(iso);
    if (isNaN(when)) return "–";
    return t("dash.ago", { s: Math.max(0, Math.round((Date.now() - when) / 1000)) });
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }

  function nodeCard(n) {
    const card = el("article", "node " + n.status);
    card.dataset.nodeId = n.node_id;
    card.dataset.status = n.status;
    const title = el("h3");
    title.append(el("span", null, n.node_name || n.node_id), el("span", "status " + n.status, t("status." + n.status)));
    card.append(title);
    const load = n.load_percentage || 0;
    const bar = el("div", "bar " + (load >= 90 ? "critical" : load >= 70 ? "warning" : ""));
    const fill = el("div");
    fill.style.width = Math.min(100, load) + "%";
    bar.append(fill);
    card.append(bar);
    const dl = el("dl");
    const streams = (n.serving && n.serving.length ? n.serving : n.streams) || [];
    const rows = [
      ["dash.viewers_short", `${n.current_connections} / ${n.max_connections} (${load}%)`],
      ["dash.cpu", `${n.cpu_usage}%`],
      ["dash.memory", `${n.memory_usage}%`],
      ["dash.bandwidth", mbps(n.bandwidth)],
      ["dash.heartbeat", ago(n.last_heartbeat)],
      ["dash.streams", streams.length ? streams.join(", ") : t("dash.none")],
    ];
    for (const [key, value] of rows) {
      dl.append(el("dt", null, t(key)), el("dd", null, value));
    }
    card.append(dl);
    return card;
  }

  function render() {
    const d = page.data;
    if (!d) return;
    $("t-nodes").textContent = `${d.healthy_nodes} / ${d.total_nodes}`;
    $("t-viewers").textContent = `${d.total_connections} / ${d.total_capacity}`;
    $("t-util").textContent = `${d.utilization}%`;
    const advice = d.advice || {};
    const box = $("advice");
    // The master sets advice.message once every serving node is critical; that is the alarm.
    const add = advice.message ? advice.nodes_to_add || 0 : 0;
    box.classList.toggle("needed", add > 0);
    box.textContent = add > 0
      ? t("dash.advice.add", { n: add, r: advice.recommended_nodes, s: advice.students })
      : t("dash.advice.ok", { r: advice.recommended_nodes, s: advice.students });
    const list = $("nodes");
    list.replaceChildren();
    const nodes = (d.nodes || []).slice().sort((a, b) => a.node_id.localeCompare(b.node_id));
    if (!nodes.length) list.append(el("p", "muted", t("dash.empty")));
    for (const n of nodes) list.append(nodeCard(n));
    const time = page.updatedAt ? page.updatedAt.toLocaleTimeString() : "–";
    $("updated").textContent = page.error ? t("dash.stale", { t: time }) : t("dash.updated", { t: time });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signin);
    window.I18N.onChange(render);
    const token = savedToken();
    if (token) begin(token);
  });
})();
