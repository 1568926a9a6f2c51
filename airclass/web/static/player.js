// AirPlayer: plays an AIRClass HLS entry URL with hls.js (Safari: native HLS).
//
// It waits while the stream is not live (the entry playlist answers 404/503) and starts by
// itself when it begins; asks for a new token when its token or node is refused or when every
// node it knows has failed (hls.js itself moves between the redundant variants of the entry
// playlist); and renews its token before it expires without stopping the video: the media
// URLs carry a session id bound to the token's expiry, so after renewing, the session ids of
// the new entry playlist are swapped into hls.js's requests (xhrSetup) as they go out.
"use strict";
(function () {
  const SID_URL = /^(https?:\/\/[^/]+\/[^/?#]+\/[^/?#]+\/)([A-Za-z0-9_-]{8,96})(\/.*)$/;
  const POLL_MS = 2000;
  const STALL_MS = 12000;
  // Seconds behind hls.js's catch-up range before the player jumps back to the live edge.
  const BEHIND_TICKS = 3;
  // Milliseconds the video may stand still with parts to load that hls.js does not load.
  const UNSTICK_MS = 1000;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function variantUrls(text, base) {
    return text.split(/\r?\n/).filter((line) => line && !line.startsWith("#"))
      .map((line) => new URL(line.trim(), base).href);
  }

  class AirPlayer {
    // opts.getTicket(): async, returns a /api/token reply ({hls_url, node_id, expires_at, ...}).
    // opts.onState(state), opts.onInfo(info); opts.muted: start muted (teacher preview).
    constructor(video, opts) {
      this.video = video;
      this.opts = opts;
      this.reply = null;
      this.hls = null;
      this.state = "idle";
      this.latency = null;
      this.node = null;
      this.sidMap = new Map();
      this.renewals = 0;
      this.rejoins = 0;
      this.mediaRecoveries = 0;
      this.stopped = false;
      this.generation = 0;
      this.renewTimer = null;
      this.lastTime = -1;
      this.lastProgress = Date.now();
      this.behindTicks = 0;
      this.catchUps = 0;
      this.unsticks = 0;
      this.lastFragLoading = Date.now();
      video.addEventListener("ended", () => this.onEnded());
      video.addEventListener("playing", () => this.setState("playing"));
      this.ticker = setInterval(() => this.tick(), 1000);
    }

    setState(state) {
      if (this.state === state) return;
      this.state = state;
      if (this.opts.onState) this.opts.onState(state);
    }

    info() {
      if (this.opts.onInfo) this.opts.onInfo({ node: this.node, latency: this.latency, state: this.state });
    }

    async start(reply) {
      this.stopped = false;
      this.useReply(reply);
      await this.waitUntilLive();
    }

    stop() {
      this.stopped = true;
      this.generation++;
      clearTimeout(this.renewTimer);
      clearInterval(this.ticker);
      this.detach();
      this.setState("stopped");
    }

    useReply(reply) {
      this.reply = reply;
      this.node = reply.node_id;
      this.scheduleRenew();
      this.info();
    }

    scheduleRenew() {
      clearTimeout(this.renewTimer);
      const reply = this.reply;
      if (!reply || !reply.expires_at) return;
      const ttl = reply.expires_in || 3600;
      const margin = Math.max(5, Math.min(300, ttl * 0.1));
      const delay = Math.max(1000, (reply.expires_at - margin) * 1000 - Date.now());
      this.renewTimer = setTimeout(() => this.renew(), Math.min(delay, 2 ** 31 - 1));
    }

    // A new token; the video keeps playing on its current sessions, renamed to the new ones.
    async renew() {
      let reply;
      try {
        reply = await this.opts.getTicket();
      } catch (err) {
        this.renewTimer = setTimeout(() => this.renew(), 10000);
        return false;
      }
      if (!this.hls) {
        this.useReply(reply);
        if (this.video.src && !this.hls && this.state === "playing") this.video.src = reply.hls_url;
        this.renewals++;
        return true;
      }
      try {
        const res = await fetch(reply.hls_url, { cache: "no-store" });
        if (!res.ok) throw new Error("entry " + res.status);
        for (const url of variantUrls(await res.text(), reply.hls_url)) {
          const m = url.match(SID_URL);
          if (m) this.sidMap.set(m[1], m[2]);
        }
      } catch (err) {
        this.renewTimer = setTimeout(() => this.renew(), 10000);
        return false;
      }
      this.useReply(reply);
      this.renewals++;
      return true;
    }

    rewrite(url) {
      if (!this.sidMap.size) return url;
      const m = url.match(SID_URL);
      if (!m || !this.sidMap.has(m[1])) return url;
      return m[1] + this.sidMap.get(m[1]) + m[3];
    }

    async rejoin() {
      // A fresh token, possibly for another node (the master picks a healthy one).
      this.rejoins++;
      for (let delay = 1000; !this.stopped; delay = Math.min(delay * 2, 8000)) {
        try {
          this.useReply(await this.opts.getTicket());
          return;
        } catch (err) {
          if (err && err.fatal) throw err;
          await sleep(delay);
        }
      }
    }

    async waitUntilLive() {
      const generation = ++this.generation;
      let failures = 0;
      if (this.state !== "reconnecting") this.setState("connecting");
      while (!this.stopped && generation === this.generation) {
        let res = null;
        try {
          res = await fetch(this.reply.hls_url, { cache: "no-store" });
        } catch (err) {
          res = null;
        }
        if (generation !== this.generation) return;
        if (res && res.ok) {
          this.attach();
          return;
        }
        if (res && (res.status === 404 || res.status === 503)) {
          failures = 0;
          this.setState("waiting");
        } else if (res && (res.status === 401 || res.status === 403)) {
          await this.rejoin();
          continue;
        } else if (++failures >= 3) {
          // The node does not answer: ask for another.
          this.setState("reconnecting");
          failures = 0;
          await this.rejoin();
          continue;
        }
        await sleep(POLL_MS);
      }
    }

    attach() {
      this.detach();
      this.sidMap.clear();
      this.mediaRecoveries = 0;
      this.lastProgress = Date.now();
      const url = this.reply.hls_url;
      const video = this.video;
      if (this.opts.muted) video.muted = true;
      if (window.Hls && window.Hls.isSupported()) {
        const Hls = window.Hls;
        // LL-HLS: hls.js loads parts, blocks on playlist reloads and plays PART-HOLD-BACK
        // behind the live edge. A live-sync count given to the constructor would override
        // PART-HOLD-BACK, so the plain-HLS distance (two segments) is set on the live config
        // afterwards: hls.js uses it only for playlists without a hold-back.
        // A school LAN: a node that refuses a request or sends nothing for 2 s is down. One
        // quick retry, then hls.js moves to the backup node's variant of the entry playlist
        // (a pathway of its own), instead of retrying the dead node for seconds (hls.js's
        // defaults: up to 6 retries, 1-8 s apart). Blocking playlist reloads keep hls.js's
        // own, shorter bound. When every node has failed, the error is fatal: rejoin below.
        const policy = (ttfb, load) => ({ default: {
          maxTimeToFirstByteMs: ttfb,
          maxLoadTimeMs: load,
          timeoutRetry: { maxNumRetry: 1, retryDelayMs: 0, maxRetryDelayMs: 0 },
          errorRetry: { maxNumRetry: 1, retryDelayMs: 250, maxRetryDelayMs: 500 },
        } });
        const hls = new Hls({
          lowLatencyMode: true,
          playlistLoadPolicy: policy(2000, 4000),
          fragLoadPolicy: policy(2000, 8000),
          maxLiveSyncPlaybackRate: 1.2,
          backBufferLength: 30,
          xhrSetup: (xhr, requested) => { xhr.open("GET", this.rewrite(requested), true); },
        });
        hls.config.liveSyncDurationCount = 2;
        hls.config.liveMaxLatencyDurationCount = 6;
        this.hls = hls;
        const primaryHost = new URL(url).host;
        hls.on(Hls.Events.MANIFEST_PARSED, () => this.play());
        hls.on(Hls.Events.LEVEL_LOADED, (_e, data) => {
          try {
            const host = new URL(data.details.url).host;
            this.node = host === primaryHost ? this.reply.node_id : this.nameOf(host);
          } catch (err) { /* keep the last name */ }
        });
        hls.on(Hls.Events.ERROR, (_e, data) => this.onHlsError(data));
        this.lastFragLoading = Date.now();
        hls.on(Hls.Events.FRAG_LOADING, () => { this.lastFragLoading = Date.now(); });
        hls.loadSource(url);
        hls.attachMedia(video);
      } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
        video.src = url;
        this.play();
      } else {
        this.setState("unsupported");
      }
    }

    // A backup node's id, from the master's node list (the playlist has only its URL). The
    // list is for staff: a student's player, without a teacher's token, shows the host.
    nameOf(host) {
      if (!this.hostNames) {
        this.hostNames = new Map();
        const headers = this.opts.authorization ? { Authorization: this.opts.authorization() } : {};
        fetch("/cluster/nodes", { cache: "no-store", headers }).then((res) => res.ok ? res.json() : { nodes: [] })
          .then((data) => {
            for (const n of data.nodes || []) {
              try { this.hostNames.set(new URL(n.hls_url).host, n.node_id); } catch (err) { /* skip */ }
            }
            if (this.node === host && this.hostNames.has(host)) this.node = this.hostNames.get(host);
          }).catch(() => {});
      }
      return this.hostNames.get(host) || host;
    }

    detach() {
      if (this.hls) {
        this.hls.destroy();
        this.hls = null;
      }
      if (this.video.getAttribute("src")) {
        this.video.removeAttribute("src");
        this.video.load();
      }
      this.latency = null;
    }

    play() {
      const video = this.video;
      const attempt = video.play();
      if (attempt && attempt.catch) {
        attempt.catch(() => {
          // Autoplay with sound was refused: play muted and offer the sound button.
          video.muted = true;
          video.play().catch(() => {});
          if (this.opts.onMuted) this.opts.onMuted();
        });
      }
    }

    async onHlsError(data) {
      if (!data.fatal || this.stopped) return;
      const Hls = window.Hls;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && this.mediaRecoveries++ < 3) {
        this.hls.recoverMediaError();
        return;
      }
      const code = data.response && data.response.code;
      this.detach();
      if (code === 404 || code === 503) {
        this.setState("waiting");
      } else {
        this.setState("reconnecting");
        await this.rejoin();
      }
      await this.waitUntilLive();
    }

    onEnded() {
      if (this.stopped) return;
      this.detach();
      this.setState("ended");
      setTimeout(() => { if (this.state === "ended") this.waitUntilLive(); }, 3000);
    }

    tick() {
      const video = this.video;
      if (this.hls && this.hls.playingDate) {
        this.latency = Math.max(0, (Date.now() - this.hls.playingDate.getTime()) / 1000);
      } else if (!this.hls && video.getStartDate) {
        const start = video.getStartDate();
        if (start && !isNaN(start.getTime())) {
          this.latency = Math.max(0, (Date.now() - start.getTime() - video.currentTime * 1000) / 1000);
        }
      }
      if (this.state === "playing" && !video.paused) {
        if (video.currentTime !== this.lastTime) {
          this.lastTime = video.currentTime;
          this.lastProgress = Date.now();
        } else if (Date.now() - this.lastProgress > STALL_MS) {
          this.lastProgress = Date.now();
          this.detach();
          this.setState("reconnecting");
          this.rejoin().then(() => this.waitUntilLive());
        }
      }
      const details = this.playingLive();
      this.unstick(details);
      this.keepLive(details);
      this.info();
    }

    // The live playlist hls.js plays while the video plays; null otherwise.
    playingLive() {
      const hls = this.hls;
      if (!hls || this.state !== "playing" || this.video.paused) return null;
      const level = hls.levels[hls.currentLevel];
      const details = level && level.details;
      return details && details.live ? details : null;
    }

    // hls.js started in the middle of the open segment loads every part listed so far at once,
    // then can count that segment as buffered and load nothing more until its parts leave the
    // playlist (~3 target durations) while the video stands still. When the video has stood
    // still for UNSTICK_MS with parts listed beyond what is buffered and no fragment load
    // started meanwhile, re-attach the media (hls.js forgets what it had buffered, keeps the
    // position and loads the missing parts).
    unstick(details) {
      const video = this.video;
      const now = Date.now();
      if (!details) return;
      if (now - this.lastProgress < UNSTICK_MS || now - this.lastFragLoading < UNSTICK_MS) return;
      const buffered = video.buffered;
      const end = buffered.length ? buffered.end(buffered.length - 1) : video.currentTime;
      if (!(details.edge > end + 0.5)) return;
      this.unsticks++;
      this.lastProgress = now;
      this.lastFragLoading = now;
      this.hls.recoverMediaError();
    }

    // hls.js plays faster to reach its target latency only within one target duration of it
    // ("further than one target duration from target can be considered DVR playback") and
    // seeks only past liveMaxLatencyDuration: a student left in between (by a stall while
    // starting, say) would stay seconds behind the class for the whole lecture. A live lesson
    // has no DVR: after BEHIND_TICKS seconds that far behind, jump to the live sync position.
    keepLive(details) {
      const hls = this.hls;
      const video = this.video;
      const target = details && hls.targetLatency;
      const sync = details && hls.liveSyncPosition;
      if (!details || target === null || sync === null || !(sync > video.currentTime)) {
        this.behindTicks = 0;
        return;
      }
      const dvr = Math.min(hls.maxLatency || Infinity, target + details.targetduration);
      if (hls.latency - target < dvr) {
        this.behindTicks = 0;
      } else if (++this.behindTicks >= BEHIND_TICKS) {
        this.behindTicks = 0;
        this.catchUps++;
        video.currentTime = sync;
      }
    }
  }

  window.AirPlayer = AirPlayer;

  // Shared by the pages: POST JSON and turn an error reply into an Error with .status.
  window.postJson = async function (url, body) {
    let res;
    try {
      res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    } catch (err) {
      const error = new Error("network");
      error.status = 0;
      throw error;
    }
    let data = null;
    try { data = await res.json(); } catch (err) { data = null; }
    if (!res.ok) {
      const error = new Error((data && data.error) || res.statusText);
      error.status = res.status;
      error.fatal = res.status === 401 || res.status === 403 || res.status === 400;
      throw error;
    }
    return data;
  };

  window.streamFromQuery = function () {
    const stream = new URLSearchParams(location.search).get("stream");
    return stream && /^[A-Za-z0-9_-]{1,64}\/[A-Za-z0-9_-]{1,64}$/.test(stream) ? stream : "live/stream";
  };
})();
