// Teacher page: password → OBS settings, live preview, viewers, keyframe-interval check.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const t = (key, vars) => window.I18N.t(key, vars);
  const stream = window.streamFromQuery();
  const page = { reply: null, info: null, stats: null, player: null, viewers: null, keyframeWarning: false };
  window.airclass = page;
  let password = "";

  function errorText(err) {
    if (err.status === 0) return t("err.network");
    if (err.status === 401) return t("err.password");
    if (err.status === 403) return t("err.teacher_disabled");
    if (err.status === 429) return t("err.rate");
    return err.message;
  }

  function ticket() {
    return window.postJson("/api/token", { user_type: "teacher", user_id: "teacher", password, stream });
  }

  async function signin(event) {
    event.preventDefault();
    password = $("password").value;
    $("signin-error").textContent = "";
    $("signin").disabled = true;
    try {
      page.reply = await ticket();
    } catch (err) {
      $("signin-error").textContent = errorText(err);
      $("signin").disabled = false;
      return;
    }
    $("password").value = "";
    $("signin-view").classList.add("hidden");
    $("teacher-view").classList.remove("hidden");
    showTicket();
    page.player = new window.AirPlayer($("video"), {
      getTicket: async () => {
        page.reply = await ticket();
        showTicket();
        return page.reply;
      },
      // The node list names backup nodes; it is for staff, so it needs the teacher's token.
      authorization: () => "Bearer " + (page.reply.read_token || page.reply.token),
      muted: true,
      onState: (state) => $("overlay").classList.toggle("hidden", state === "playing"),
      onInfo: (info) => {
        $("node").textContent = info.node || "–";
        $("latency").textContent = info.latency == null ? "–" : info.latency.toFixed(1) + " s";
      },
    });
    page.player.start(page.reply);
    poll();
    setInterval(poll, 3000);
  }

  // The publish token is short-lived (it sits in OBS settings): renew it before it expires and
  // show the new stream key. A publish already running is not cut when its token expires;
  // the new key is for the next time OBS connects.
  const RENEW_BEFORE_S = 60;
  const RENEW_RETRY_MS = 10000;

  function showTicket() {
    const reply = page.reply;
    sessionStorage.setItem("airclass.teacher", JSON.stringify({
      token: reply.read_token || reply.token, expires_at: reply.read_expires_at || reply.expires_at,
    }));
    $("server").value = reply.rtmp_url;
    $("stream-key").value = reply.stream_key;
    $("node").textContent = reply.node_id;
    page.keyExpiresAt = reply.expires_at;
    clearTimeout(page.renewTimer);
    const lifetime = reply.expires_in || 0;
    const lead = Math.min(RENEW_BEFORE_S, lifetime / 5);
    page.renewTimer = setTimeout(renew, Math.max(1, lifetime - lead) * 1000);
  }

  async function renew() {
    try {
      page.reply = await ticket();
      page.renewals = (page.renewals || 0) + 1;
      showTicket();
    } catch (err) {
      // 401: the password changed; the page keeps the old key until the teacher signs in again.
      page.renewError = err.status || 0;
      if (err.status !== 401) page.renewTimer = setTimeout(renew, RENEW_RETRY_MS);
    }
  }

  async function getJson(url, headers) {
    const res = await fetch(url, { cache: "no-store", headers: headers || {} });
    if (!res.ok) throw new Error(String(res.status));
    return res.json();
  }

  async function poll() {
    try { page.info = await getJson("/api/info"); } catch (err) { /* keep the last */ }
    // The ingest node's own numbers: its HLS origin serves /api/stats too, to a teacher's token.
    const auth = { Authorization: "Bearer " + (page.reply.read_token || page.reply.token) };
    try {
      const stats = await getJson(new URL("/api/stats", page.reply.hls_url).href, auth);
      page.stats = (stats.streams || {})[stream] || null;
    } catch (err) {
      page.stats = null;
    }
    if (page.info && page.info.role === "master") {
      try {
        const bearer = page.reply.read_token || page.reply.token;
        const data = await getJson("/api/dashboard", { Authorization: "Bearer " + bearer });
        page.viewers = data.total_connections;
      } catch (err) {
        page.viewers = null;
      }
    } else {
      page.viewers = page.stats ? page.stats.viewers : 0;
    }
    render();
  }

  function render() {
    const s = page.stats;
    $("viewers").textContent = page.viewers == null ? "–" : String(page.viewers);
    $("stream-state").textContent = s && s.publishing ? t("state.playing") : t("teacher.not_live");
    $("resolution").textContent = s && s.resolution ? s.resolution.join("×") : "–";
    $("keyframe").textContent = s && s.keyframe_interval ? s.keyframe_interval.toFixed(1) + " s" : "–";
    const target = page.info && page.info.segment_duration ? page.info.segment_duration : 2;
    $("segment").textContent = target + " s";
    const warning = $("kf-warning");
    const kf = s && s.publishing ? s.keyframe_interval : null;
    page.keyframeWarning = kf != null && kf > target + 0.05;
    if (page.keyframeWarning) {
      warning.textContent = "⚠ " + t("teacher.keyframe.warn", { k: kf.toFixed(1), t: target });
    }
    warning.classList.toggle("hidden", !page.keyframeWarning);
  }

  async function copy(button) {
    const input = $(button.dataset.copy);
    try {
      await navigator.clipboard.writeText(input.value);
    } catch (err) {
      const type = input.type;
      input.type = "text";
      input.select();
      document.execCommand("copy");
      input.type = type;
    }
    button.textContent = t("teacher.copied");
    setTimeout(() => { button.textContent = t("teacher.copy"); }, 1500);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signin);
    document.querySelectorAll("button.copy").forEach((b) => b.addEventListener("click", () => copy(b)));
    $("toggle-key").addEventListener("click", () => {
      const input = $("stream-key");
      const show = input.type === "password";
      input.type = show ? "text" : "password";
      $("toggle-key").dataset.i18n = show ? "teacher.hide" : "teacher.show";
      $("toggle-key").textContent = t($("toggle-key").dataset.i18n);
    });
    window.I18N.onChange(() => { if (page.reply) render(); });
  });
})();
