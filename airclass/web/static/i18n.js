// Korean and English text for the AIRClass pages. The language comes from the browser
// (navigator.languages) unless the user picked one with the switch, which is remembered.
"use strict";
(function () {
  const TEXT = {
    en: {
      "lang.switch": "한국어",
      "nav.student": "Student",
      "nav.teacher": "Teacher",
      "nav.dashboard": "Dashboard",
      "student.title": "Join the lecture",
      "student.lead": "Type your name and press Enter.",
      "student.name": "Your name",
      "student.name.placeholder": "e.g. Kim Minji",
      "student.code": "Class code",
      "student.code.placeholder": "Code from your teacher",
      "student.join": "Join",
      "student.leave": "Leave",
      "student.node": "Server",
      "student.latency": "Delay",
      "student.viewer": "Watching as",
      "state.waiting": "Waiting for the teacher to start…",
      "state.connecting": "Connecting…",
      "state.playing": "LIVE",
      "state.ended": "The lecture has ended.",
      "state.reconnecting": "Connection lost. Reconnecting…",
      "state.offline": "Waiting",
      "player.unmute": "🔊 Tap for sound",
      "err.name": "Please type your name.",
      "err.code": "Please type the class code.",
      "err.wrong_code": "That class code is not right.",
      "err.network": "Cannot reach the server. Check the Wi-Fi and try again.",
      "err.no_node": "The class is full right now. Please try again in a moment.",
      "err.rate": "Too many attempts. Please wait a minute.",
      "err.password": "Wrong password.",
      "err.teacher_disabled": "Teacher sign-in is turned off on this server.",
      "teacher.title": "Teacher",
      "teacher.lead": "Sign in to get your OBS settings and see your class.",
      "teacher.password": "Teacher password",
      "teacher.signin": "Sign in",
      "teacher.obs": "OBS settings",
      "teacher.obs.where": "In OBS: Settings → Stream → Service: Custom…",
      "teacher.server": "Server",
      "teacher.key": "Stream Key",
      "teacher.copy": "Copy",
      "teacher.copied": "Copied ✓",
      "teacher.show": "Show",
      "teacher.hide": "Hide",
      "teacher.keyframe": "Keyframe interval: set 1 s (1–2 s) in Settings → Output → Keyframe Interval (Output Mode: Advanced).",
      "teacher.keyframe.warn": "Your encoder sends a keyframe every {k} s, so video segments are {k} s long instead of {t} s and students lag behind. In OBS set Settings → Output → Keyframe Interval to 1 s.",
      "teacher.keyframe.ok": "Keyframe interval {k} s — good.",
      "teacher.preview": "Live preview",
      "teacher.viewers": "Students watching",
      "teacher.stream": "Stream",
      "teacher.resolution": "Picture",
      "teacher.kf": "Keyframe interval",
      "teacher.segment": "Segment target",
      "teacher.not_live": "Not live yet — start streaming in OBS.",
      "teacher.key_secret": "Keep the stream key secret: anyone with it can broadcast to your class.",
      "dash.title": "Cluster dashboard",
      "dash.lead": "Sign in with the teacher password.",
      "dash.nodes": "Nodes serving",
      "dash.viewers": "Viewers / seats",
      "dash.utilization": "Utilization",
      "dash.advice": "Advice",
      "dash.advice.ok": "Enough capacity for now. Rule of thumb: {r} node(s) for {s} student(s) (ceil(students / 150) × 1.3).",
      "dash.advice.add": "Every node is full: add {n} more slave(s) — {r} recommended for {s} students.",
      "dash.viewers_short": "Viewers",
      "dash.cpu": "CPU",
      "dash.memory": "Memory",
      "dash.bandwidth": "Bandwidth",
      "dash.heartbeat": "Last heartbeat",
      "dash.streams": "Live streams",
      "dash.none": "none",
      "dash.updated": "Updated {t} — refreshes every few seconds.",
      "dash.stale": "Cannot reach the server — showing the last data ({t}).",
      "dash.ago": "{s} s ago",
      "dash.empty": "No slave has registered yet.",
      "status.healthy": "healthy",
      "status.warning": "busy",
      "status.critical": "full",
      "status.offline": "offline"
    },
    ko: {
      "lang.switch": "English",
      "nav.student": "학생",
      "nav.teacher": "교사",
      "nav.dashboard": "대시보드",
      "student.title": "수업 참여하기",
      "student.lead": "이름을 입력하고 Enter 키를 누르세요.",
      "student.name": "이름",
      "student.name.placeholder": "예: 김민지",
      "student.code": "수업 코드",
      "student.code.placeholder": "선생님이 알려 준 코드",
      "student.join": "입장",
      "student.leave": "나가기",
      "student.node": "서버",
      "student.latency": "지연",
      "student.viewer": "시청자",
      "state.waiting": "선생님이 방송을 시작하기를 기다리는 중…",
      "state.connecting": "연결하는 중…",
      "state.playing": "생방송",
      "state.ended": "수업 방송이 끝났습니다.",
      "state.reconnecting": "연결이 끊겼습니다. 다시 연결하는 중…",
      "state.offline": "대기 중",
      "player.unmute": "🔊 눌러서 소리 켜기",
      "err.name": "이름을 입력하세요.",
      "err.code": "수업 코드를 입력하세요.",
      "err.wrong_code": "수업 코드가 맞지 않습니다.",
      "err.network": "서버에 연결할 수 없습니다. Wi-Fi를 확인하고 다시 시도하세요.",
      "err.no_node": "지금은 자리가 없습니다. 잠시 후 다시 시도하세요.",
      "err.rate": "시도가 너무 많습니다. 1분 뒤에 다시 시도하세요.",
      "err.password": "비밀번호가 틀렸습니다.",
      "err.teacher_disabled": "이 서버에서는 교사 로그인이 꺼져 있습니다.",
      "teacher.title": "교사",
      "teacher.lead": "로그인하면 OBS 설정과 수업 현황을 볼 수 있습니다.",
      "teacher.password": "교사 비밀번호",
      "teacher.signin": "로그인",
      "teacher.obs": "OBS 설정",
      "teacher.obs.where": "OBS: 설정 → 방송 → 서비스: 사용자 지정…",
      "teacher.server": "서버",
      "teacher.key": "스트림 키",
      "teacher.copy": "복사",
      "teacher.copied": "복사됨 ✓",
      "teacher.show": "보기",
      "teacher.hide": "숨기기",
      "teacher.keyframe": "키프레임 간격: 설정 → 출력 → 키프레임 간격을 1초(1–2초)로 설정하세요 (출력 방식: 고급).",
      "teacher.keyframe.warn": "인코더가 {k}초마다 키프레임을 보내서 영상 조각이 {t}초가 아니라 {k}초가 되고 학생 화면이 늦어집니다. OBS에서 설정 → 출력 → 키프레임 간격을 1초로 바꾸세요.",
      "teacher.keyframe.ok": "키프레임 간격 {k}초 — 좋습니다.",
      "teacher.preview": "실시간 미리보기",
      "teacher.viewers": "시청 중인 학생",
      "teacher.stream": "스트림",
      "teacher.resolution": "화면",
      "teacher.kf": "키프레임 간격",
      "teacher.segment": "조각 목표 길이",
      "teacher.not_live": "아직 방송 전입니다 — OBS에서 방송을 시작하세요.",
      "teacher.key_secret": "스트림 키는 비밀로 하세요. 키가 있으면 누구나 이 수업에 방송할 수 있습니다.",
      "dash.title": "클러스터 대시보드",
      "dash.lead": "교사 비밀번호로 로그인하세요.",
      "dash.nodes": "서비스 중인 노드",
      "dash.viewers": "시청자 / 좌석",
      "dash.utilization": "사용률",
      "dash.advice": "권장 사항",
      "dash.advice.ok": "지금은 용량이 충분합니다. 기준: 학생 {s}명에 노드 {r}대 (ceil(학생 수 / 150) × 1.3).",
      "dash.advice.add": "모든 노드가 가득 찼습니다: 슬레이브를 {n}대 더 추가하세요 — 학생 {s}명에 {r}대 권장.",
      "dash.viewers_short": "시청자",
      "dash.cpu": "CPU",
      "dash.memory": "메모리",
      "dash.bandwidth": "대역폭",
      "dash.heartbeat": "마지막 신호",
      "dash.streams": "방송 중인 스트림",
      "dash.none": "없음",
      "dash.updated": "{t}에 갱신 — 몇 초마다 자동으로 새로 고칩니다.",
      "dash.stale": "서버에 연결할 수 없습니다 — 마지막 데이터({t})를 보여 줍니다.",
      "dash.ago": "{s}초 전",
      "dash.empty": "아직 등록된 슬레이브가 없습니다.",
      "status.healthy": "정상",
      "status.warning": "혼잡",
      "status.critical": "포화",
      "status.offline": "오프라인"
    }
  };
  const STORE = "airclass.lang";

  function pick() {
    const saved = localStorage.getItem(STORE);
    if (saved === "ko" || saved === "en") return saved;
    const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
    for (const lang of langs) {
      const base = String(lang).toLowerCase().split("-")[0];
      if (base === "ko" || base === "en") return base;
    }
    return "en";
  }

  let lang = pick();

  function t(key, vars) {
    let text = (TEXT[lang] && TEXT[lang][key]) || TEXT.en[key] || key;
    if (vars) for (const [k, v] of Object.entries(vars)) text = text.split("{" + k + "}").join(String(v));
    return text;
  }

  function apply(root) {
    const scope = root || document;
    document.documentElement.lang = lang;
    scope.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    scope.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
    scope.querySelectorAll("[data-i18n-title]").forEach((el) => { el.title = t(el.dataset.i18nTitle); });
    const title = document.querySelector("title[data-i18n-doc]");
    if (title) document.title = "AIRClass · " + t(title.dataset.i18nDoc);
    listeners.forEach((fn) => fn(lang));
  }

  const listeners = [];
  function set(next) {
    lang = next === "ko" ? "ko" : "en";
    localStorage.setItem(STORE, lang);
    apply();
  }

  window.I18N = { t, apply, set, get lang() { return lang; }, onChange: (fn) => listeners.push(fn), TEXT };

  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("lang-switch");
    if (button) button.addEventListener("click", () => set(lang === "ko" ? "en" : "ko"));
    apply();
  });
})();
