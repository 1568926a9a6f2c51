// Student page: name (+ class code when the server asks for one) → token → the lecture.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const t = (key, vars) => window.I18N.t(key, vars);
  const stream = window.streamFromQuery();
  const page = { info: null, player: null, name: "", code: "", state: "idle" };
  window.airclass = page;

  function errorText(err) {
    if (err.status === 0) return t("err.network");
    if (err.status === 403 && /class code/i.test(err.message)) return t("err.wrong_code");
    if (err.status === 429) return t("err.rate");
    if (err.status === 503) return t("err.no_node");
    return err.message;
  }

  async function loadInfo() {
    try {
      const res = await fetch("/api/info", { cache: "no-store" });
      page.info = await res.json();
      $("code-row").classList.toggle("hidden", !page.info.class_code_required);
    } catch (err) {
      page.info = null;
    }
  }

  function ticket() {
    const body = { user_type: "student", user_id: page.name, stream };
    if (page.code) body.class_code = page.code;
    return window.postJson("/api/token", body);
  }

  const STATE_TEXT = {
    connecting: "state.connecting", waiting: "state.waiting", playing: "state.playing",
    ended: "state.ended", reconnecting: "state.reconnecting", stopped: "state.offline",
  };

  function showState(state) {
    page.state = state;
    const pill = $("state");
    pill.className = "pill " + (state === "playing" ? "live" : "waiting");
    pill.textContent = t(state === "playing" ? "state.playing" : "state.offline");
    const overlay = $("overlay");
    overlay.classList.toggle("hidden", state === "playing");
    $("spinner").classList.toggle("hidden", state === "ended");
    const key = STATE_TEXT[state] || "state.connecting";
    $("overlay-text").dataset.i18n = key;
    $("overlay-text").textContent = t(key);
  }

  function showInfo(info) {
    $("node").textContent = info.node || "–";
    $("latency").textContent = info.latency == null ? "–" : info.latency.toFixed(1) + " s";
  }

  async function join(event) {
    event.preventDefault();
    const name = $("name").value.trim();
    const code = $("code").value.trim();
    $("join-error").textContent = "";
    if (!name) { $("join-error").textContent = t("err.name"); $("name").focus(); return; }
    if (page.info && page.info.class_code_required && !code) {
      $("join-error").textContent = t("err.code"); $("code").focus(); return;
    }
    page.name = name;
    page.code = code;
    $("join").disabled = true;
    let reply;
    try {
      reply = await ticket();
    } catch (err) {
      $("join-error").textContent = errorText(err);
      $("join").disabled = false;
      return;
    }
    localStorage.setItem("airclass.name", name);
    $("viewer").textContent = name;
    $("join-view").classList.add("hidden");
    $("watch-view").classList.remove("hidden");
    const video = $("video");
    page.player = new window.AirPlayer(video, {
      getTicket: ticket,
      onState: showState,
      onInfo: showInfo,
      onMuted: () => $("unmute").classList.remove("hidden"),
    });
    showState("connecting");
    page.player.start(reply).catch((err) => { $("overlay-text").textContent = errorText(err); });
  }

  function leave() {
    if (page.player) page.player.stop();
    page.player = null;
    $("watch-view").classList.add("hidden");
    $("join-view").classList.remove("hidden");
    $("join").disabled = false;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("name").value = localStorage.getItem("airclass.name") || "";
    $("join-form").addEventListener("submit", join);
    $("leave").addEventListener("click", leave);
    $("unmute").addEventListener("click", () => {
      $("video").muted = false;
      $("unmute").classList.add("hidden");
    });
    window.I18N.onChange(() => { if (page.player) showState(page.state); });
    loadInfo();
  });
})();
