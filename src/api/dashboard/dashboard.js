/*
 * NoriKV dashboard. Polls /dashboard/data once a second (everything but the
 * events) and follows /events as server-sent events. Rates are computed
 * here from successive cumulative counts. Errors of the page itself are
 * collected in #page-errors (the headless-browser test reads it).
 */
"use strict";

(function () {
  const errBox = document.getElementById("page-errors");
  function pageError(msg) {
    const n = Number(errBox.dataset.count || 0) + 1;
    errBox.dataset.count = String(n);
    errBox.textContent += msg + "\n";
  }
  window.addEventListener("error", (e) => pageError("error: " + (e.message || e.type)));
  window.addEventListener("unhandledrejection", (e) => pageError("rejection: " + e.reason));
  const origError = console.error;
  console.error = function (...args) {
    pageError("console.error: " + args.join(" "));
    origError.apply(console, args);
  };

  const POLL_MS = 1000;
  const HISTORY = 120;            /* samples kept for charts (2 minutes) */
  const TIMELINE_MS = 5 * 60000;  /* events timeline span */
  const MAX_EVENTS = 400;         /* events kept in the page */
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
                   "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#86bcb6", "#d37295",
                   "#a0cbe8", "#ffbe7d", "#8cd17d", "#f1ce63"];
  const KIND_COLORS = {
    leader_change: "#4e79a7", election: "#a0cbe8", term_change: "#76b7b2",
    role_change: "#86bcb6", membership: "#b07aa1", shard_move: "#d37295",
    snapshot: "#9c755f", flush: "#59a14f", compaction: "#f28e2b",
    log_compaction: "#edc948", write_stall: "#e15759", slow_request: "#ff9da7",
    lifecycle: "#ffffff", info: "#bab0ac", warning: "#f1ce63", error: "#e15759",
    gap: "#ff0000",
  };
  const OPS = ["put", "get", "delete"];

  const $ = (id) => document.getElementById(id);
  let prev = null;          /* the previous sample */
  let lastOk = 0;
  let updates = 0;
  const hist = { put: [], get: [], delete: [], commit: [], fsync: [], withLeader: [], led: [] };
  let shardRate = [];
  let current = null;
  const events = [];

  function fmtUs(us) {
    if (!us) return "–";
    if (us < 1000) return us.toFixed(0) + " µs";
    if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 2 : 1) + " ms";
    return (us / 1e6).toFixed(2) + " s";
  }
  function fmtBytes(b) {
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return (i ? b.toFixed(1) : b.toFixed(0)) + " " + u[i];
  }
  function fmtRate(r) {
    return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2);
  }
  function fmtDur(ms) {
    const s = Math.floor(ms / 1000);
    if (s < 120) return s + " s";
    if (s < 7200) return Math.floor(s / 60) + " min";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function nodeColor(i) { return i < 0 ? "#2a3038" : PALETTE[i % PALETTE.length]; }

  /* ------------------------------------------------------------ cluster */

  function drawCluster(d) {
    $("node-id").textContent = d.node;
    const st = $("status");
    st.textContent = d.status;
    st.className = "pill " + d.status;
    $("uptime").textContent = fmtDur(d.uptime_ms);
    $("epoch").textContent = String(d.epoch);
    const box = $("nodes");
    box.textContent = "";
    d.nodes.forEach((n, i) => {
      const c = el("div", { class: "node", "data-node": n.id, "data-role": n.role, "data-leads": String(n.leads) });
      c.style.borderLeftColor = nodeColor(i);
      c.appendChild(el("div", { class: "id" }, n.id + (n.self ? " (this node)" : "")));
      c.appendChild(el("div", { class: "role" }, n.role + " · " + n.addr));
      c.appendChild(el("div", {}, "leads " + n.leads + " shards"));
      box.appendChild(c);
    });
    const withLeader = d.shard_leader.filter((x) => x >= 0).length;
    $("shards-with-leader").textContent = String(withLeader);
    $("shard-count").textContent = String(d.total_shards);
    $("shards-led").textContent = String(d.shards_led);
    hist.withLeader.push(withLeader);
    hist.led.push(d.shards_led);
    if (hist.withLeader.length > HISTORY) { hist.withLeader.shift(); hist.led.shift(); }
    lineChart($("led-chart"), [hist.withLeader, hist.led], ["#59a14f", "#4e79a7"], (v) => v.toFixed(0));
  }

  function drawHealth(d, dt) {
    let cpu = 0;
    if (prev && dt > 0) cpu = (d.process.cpu_us - prev.process.cpu_us) / (dt * 1e4);
    const rows = [
      ["status", d.status],
      ["shards hosted / with a leader", d.shards_hosted + " / " + d.shards_ready],
      ["damaged shards", String(d.damaged_shards)],
      ["requests waiting", String(d.pending)],
      ["memory (RSS)", fmtBytes(d.process.rss_bytes)],
      ["CPU", cpu.toFixed(0) + "%"],
      ["threads / open files", d.process.threads + " / " + d.process.open_fds],
      ["event streams", d.events.streams + " of " + d.events.max_streams],
    ];
    const tb = $("health");
    tb.textContent = "";
    rows.forEach(([k, v]) => {
      const tr = el("tr");
      tr.appendChild(el("td", {}, k));
      tr.appendChild(el("td", {}, v));
      tb.appendChild(tr);
    });
  }

  /* ------------------------------------------------------------- shards */

  let grid = { cols: 32, cell: 17, pad: 24 };
  function drawShards(d) {
    const cv = $("shard-map");
    const n = d.total_shards;
    const cols = Math.max(1, Math.ceil(Math.sqrt(n)));
    const rows = Math.ceil(n / cols);
    const cell = Math.max(4, Math.floor((cv.width - 40) / cols));
    grid = { cols, cell, pad: 36 };
    cv.height = grid.pad + rows * cell + 4;
    const g = cv.getContext("2d");
    g.fillStyle = "#1a2027";
    g.fillRect(0, 0, cv.width, cv.height);
    g.fillStyle = "#8a96a3";
    g.font = "10px sans-serif";
    g.textAlign = "right";
    const maxRate = Math.max(1, ...shardRate);
    for (let s = 0; s < n; s++) {
      const r = Math.floor(s / cols), c = s % cols;
      const x = grid.pad + c * cell, y = 4 + r * cell;
      if (c === 0 && r % 4 === 0) {
        g.fillStyle = "#8a96a3";
        g.fillText(String(s), grid.pad - 4, y + cell - 4);
      }
      g.fillStyle = nodeColor(d.shard_leader[s]);
      g.fillRect(x, y, cell - 1, cell - 1);
      const reps = d.shard_replicas[s] || [];
      if (d.nodes.length > 1 && reps.length && cell >= 8) {
        /* replicas: one strip per replica along the bottom, in its node's colour */
        const w = (cell - 3) / reps.length;
        reps.forEach((ri, k) => {
          g.fillStyle = "#0b0e11";
          g.fillRect(x + 1 + k * w, y + cell - 5, w, 3);
          g.fillStyle = nodeColor(ri);
          g.fillRect(x + 1 + k * w + 0.5, y + cell - 4.5, w - 1, 2);
        });
      }
      const rate = shardRate[s] || 0;
      if (rate > 0) { /* load: a white dot growing with the shard's write rate */
        const rr = Math.max(1.5, (cell / 2 - 2) * Math.sqrt(rate / maxRate));
        g.fillStyle = "rgba(255,255,255,0.85)";
        g.beginPath();
        g.arc(x + (cell - 1) / 2, y + (cell - 1) / 2, rr, 0, 2 * Math.PI);
        g.fill();
      }
    }
    cv.dataset.cells = String(n);
    cv.dataset.led = String(d.shard_leader.filter((x) => x >= 0).length);
    const lg = $("shard-legend");
    lg.textContent = "";
    d.nodes.forEach((nd, i) => {
      const s = el("span");
      const sw = el("i");
      sw.style.background = nodeColor(i);
      s.appendChild(sw);
      s.appendChild(document.createTextNode(nd.id + " (" + nd.leads + ")"));
      lg.appendChild(s);
    });
    const none = el("span");
    const sw = el("i");
    sw.style.background = nodeColor(-1);
    none.appendChild(sw);
    none.appendChild(document.createTextNode("no leader"));
    lg.appendChild(none);
  }

  $("shard-map").addEventListener("mousemove", (e) => {
    if (!current) return;
    const cv = $("shard-map");
    const rect = cv.getBoundingClientRect();
    const x = (e.clientX - rect.left) * (cv.width / rect.width) - grid.pad;
    const y = (e.clientY - rect.top) * (cv.height / rect.height) - 4;
    const c = Math.floor(x / grid.cell), r = Math.floor(y / grid.cell);
    const s = r * grid.cols + c;
    if (x < 0 || y < 0 || c >= grid.cols || s < 0 || s >= current.total_shards) return;
    const li = current.shard_leader[s];
    const reps = (current.shard_replicas[s] || []).map((i) => current.nodes[i] ? current.nodes[i].id : "?");
    $("shard-tip").textContent = "shard " + s + ": leader " + (li >= 0 ? current.nodes[li].id : "none") +
      "; replicas " + reps.join(", ") + "; applied index " + current.shard_applied[s] +
      "; " + fmtRate(shardRate[s] || 0) + " entries/s";
  });

  /* ---------------------------------------------------------- requests */

  function lineChart(cv, series, colors, fmt) {
    const g = cv.getContext("2d");
    const w = cv.width, h = cv.height, left = 52;
    g.fillStyle = "#1a2027";
    g.fillRect(0, 0, w, h);
    let max = 0;
    series.forEach((s) => s.forEach((v) => { if (v > max) max = v; }));
    if (max <= 0) max = 1;
    g.strokeStyle = "#2c3540";
    g.fillStyle = "#8a96a3";
    g.font = "10px sans-serif";
    g.textAlign = "right";
    for (let i = 0; i <= 2; i++) {
      const y = 6 + (h - 14) * (1 - i / 2);
      g.beginPath(); g.moveTo(left, y); g.lineTo(w, y); g.stroke();
      g.fillText(fmt(max * i / 2), left - 4, y + 3);
    }
    series.forEach((s, k) => {
      if (s.length < 2) return;
      g.strokeStyle = colors[k];
      g.lineWidth = 1.5;
      g.beginPath();
      s.forEach((v, i) => {
        const x = left + (w - left) * (i + HISTORY - s.length) / (HISTORY - 1);
        const y = 6 + (h - 14) * (1 - v / max);
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
    });
  }

  function drawOps(d, dt) {
    const tb = $("ops");
    tb.textContent = "";
    OPS.forEach((op) => {
      const o = d.ops[op];
      let rate = 0;
      if (prev && dt > 0) rate = Math.max(0, (o.count - prev.ops[op].count) / dt);
      const tr = el("tr", { id: "op-" + op });
      tr.appendChild(el("td", {}, op));
      tr.appendChild(el("td", { id: "op-" + op + "-rate" }, fmtRate(rate)));
      tr.appendChild(el("td", { id: "op-" + op + "-total" }, String(o.count)));
      tr.appendChild(el("td", {}, String(o.errors)));
      tr.appendChild(el("td", {}, fmtUs(o.latency.p50_us)));
      tr.appendChild(el("td", {}, fmtUs(o.latency.p90_us)));
      tr.appendChild(el("td", {}, fmtUs(o.latency.p99_us)));
      tb.appendChild(tr);
      if (prev) hist[op].push(rate);
      if (hist[op].length > HISTORY) hist[op].shift();
    });
    lineChart($("ops-chart"), OPS.map((op) => hist[op]), PALETTE, (v) => fmtRate(v) + "/s");
    const lg = $("ops-legend");
    lg.textContent = "";
    OPS.forEach((op, i) => {
      const s = el("span");
      const sw = el("i");
      sw.style.background = PALETTE[i];
      s.appendChild(sw);
      s.appendChild(document.createTextNode(op + " ops/s"));
      lg.appendChild(s);
    });
  }

  /* -------------------------------------------------------------- raft */

  function drawRaft(d, dt) {
    const tb = $("raft-lat");
    tb.textContent = "";
    [["commit (queued → applied)", d.raft.commit], ["log fsync", d.raft.fsync]].forEach(([name, h]) => {
      const tr = el("tr");
      tr.appendChild(el("td", {}, name));
      tr.appendChild(el("td", {}, fmtUs(h.p50_us)));
      tr.appendChild(el("td", {}, fmtUs(h.p90_us)));
      tr.appendChild(el("td", {}, fmtUs(h.p99_us)));
      tr.appendChild(el("td", {}, String(h.count)));
      tb.appendChild(tr);
    });
    let prate = 0;
    if (prev && dt > 0) prate = Math.max(0, (d.raft.proposals - prev.raft.proposals) / dt);
    $("raft-misc").textContent = "proposals " + d.raft.proposals + " (" + fmtRate(prate) + "/s), failed " +
      d.raft.proposals_failed + " · leader changes " + d.raft.leader_changes + " · snapshots sent " +
      d.raft.snapshots_sent + ", installed " + d.raft.snapshots_installed + " · pending " + d.pending;
    hist.commit.push(d.raft.commit.p99_us);
    hist.fsync.push(d.raft.fsync.p99_us);
    if (hist.commit.length > HISTORY) hist.commit.shift();
    if (hist.fsync.length > HISTORY) hist.fsync.shift();
    lineChart($("raft-chart"), [hist.commit, hist.fsync], ["#4e79a7", "#f28e2b"], fmtUs);
  }

  /* --------------------------------------------------------------- lsm */

  function drawLsm(d) {
    const cv = $("lsm-levels");
    const g = cv.getContext("2d");
    const levels = d.lsm.levels;
    const w = cv.width, rowH = Math.floor((cv.height - 4) / levels.length);
    g.fillStyle = "#1a2027";
    g.fillRect(0, 0, w, cv.height);
    const maxB = Math.max(1, ...levels.map((l) => l.bytes));
    g.font = "11px sans-serif";
    levels.forEach((l, i) => {
      const y = 2 + i * rowH;
      g.fillStyle = "#8a96a3";
      g.textAlign = "left";
      g.fillText("L" + l.level, 2, y + rowH - 6);
      const bw = (w - 230) * (l.bytes / maxB);
      g.fillStyle = i === 0 ? "#f28e2b" : "#4e79a7";
      g.fillRect(30, y + 2, Math.max(l.bytes ? 2 : 0, bw), rowH - 5);
      g.fillStyle = "#d9e0e8";
      g.textAlign = "right";
      g.fillText(l.files + " files · " + fmtBytes(l.bytes), w - 4, y + rowH - 6);
    });
    const L = d.lsm;
    $("lsm-misc").textContent = "flushes " + L.flushes + " · compactions " + L.compactions +
      " (+" + L.trivial_moves + " moves) · write stalls " + L.write_stalls + " · compaction read " +
      fmtBytes(L.compaction_bytes_read) + ", written " + fmtBytes(L.compaction_bytes_written) +
      " · write amplification " + L.write_amplification.toFixed(2) + " · memtables " +
      fmtBytes(L.memtable_bytes) + " (" + L.immutable_memtables + " immutable)";
  }

  /* -------------------------------------------------------- top shards */

  function drawTop(d, dt) {
    const n = d.total_shards;
    if (prev && dt > 0 && prev.shard_applied.length === n) {
      shardRate = d.shard_applied.map((a, i) => Math.max(0, (a - prev.shard_applied[i]) / dt));
    } else {
      shardRate = new Array(n).fill(0);
    }
    const idx = [...Array(n).keys()].filter((i) => shardRate[i] > 0)
      .sort((a, b) => shardRate[b] - shardRate[a]).slice(0, 10);
    const tb = $("top-shards");
    tb.textContent = "";
    if (!idx.length) {
      const tr = el("tr");
      tr.appendChild(el("td", { colspan: "4" }, "no writes in the last second"));
      tb.appendChild(tr);
    }
    idx.forEach((s) => {
      const tr = el("tr");
      const li = d.shard_leader[s];
      tr.appendChild(el("td", {}, String(s)));
      tr.appendChild(el("td", {}, li >= 0 ? d.nodes[li].id : "none"));
      tr.appendChild(el("td", {}, fmtRate(shardRate[s])));
      tr.appendChild(el("td", {}, String(d.shard_applied[s])));
      tb.appendChild(tr);
    });
  }

  /* ------------------------------------------------------------ events */

  function drawTimeline() {
    const cv = $("timeline");
    const g = cv.getContext("2d");
    const w = cv.width, h = cv.height;
    g.fillStyle = "#1a2027";
    g.fillRect(0, 0, w, h);
    const now = Date.now();
    const kinds = [...new Set(events.map((e) => e.kind))];
    g.strokeStyle = "#2c3540";
    g.fillStyle = "#8a96a3";
    g.font = "10px sans-serif";
    g.textAlign = "center";
    for (let m = 0; m <= 5; m++) {
      const x = w - (w - 10) * m / 5 - 5;
      g.beginPath(); g.moveTo(x, 0); g.lineTo(x, h - 12); g.stroke();
      g.fillText(m ? "-" + m + " min" : "now", x, h - 2);
    }
    const rowH = Math.max(6, Math.min(16, (h - 16) / Math.max(1, kinds.length)));
    events.forEach((e) => {
      const t = e.time_ms || now;
      if (now - t > TIMELINE_MS) return;
      const x = w - 5 - (w - 10) * (now - t) / TIMELINE_MS;
      const y = 2 + kinds.indexOf(e.kind) * rowH;
      g.fillStyle = KIND_COLORS[e.kind] || "#bab0ac";
      g.fillRect(x - 1.5, y, 3, rowH - 2);
    });
    const lg = $("timeline-legend");
    lg.textContent = "";
    kinds.forEach((k) => {
      const s = el("span");
      const sw = el("i");
      sw.style.background = KIND_COLORS[k] || "#bab0ac";
      s.appendChild(sw);
      s.appendChild(document.createTextNode(k + " (" + events.filter((e) => e.kind === k).length + ")"));
      lg.appendChild(s);
    });
  }

  function addEvent(e) {
    events.push(e);
    if (events.length > MAX_EVENTS) events.shift();
    const box = $("events");
    const row = el("div", { class: "ev" + (e.kind === "gap" ? " gap" : ""), "data-kind": e.kind });
    const t = e.time_ms ? new Date(e.time_ms) : new Date();
    row.appendChild(el("span", {}, t.toLocaleTimeString()));
    const k = el("span", { class: "k" }, e.kind);
    k.style.color = KIND_COLORS[e.kind] || "#bab0ac";
    row.appendChild(k);
    row.appendChild(el("span", {}, e.shard === null || e.shard === undefined ? "" : "shard " + e.shard));
    row.appendChild(el("span", {}, e.message || ""));
    box.insertBefore(row, box.firstChild);
    while (box.childNodes.length > MAX_EVENTS) box.removeChild(box.lastChild);
    box.dataset.count = String(events.length);
  }

  let es = null;
  let esRetryAt = 0;
  let lastEventSeq = -1; /* seq of the newest event shown */
  function followEvents(serverLastSeq) {
    if (es || typeof EventSource === "undefined" || Date.now() < esRetryAt) return;
    let since;
    if (lastEventSeq < 0) since = Math.max(0, serverLastSeq - 200); /* some history first */
    else if (lastEventSeq > serverLastSeq) since = 0; /* the node restarted: numbers began again */
    else since = lastEventSeq;
    es = new EventSource("/events?since=" + since);
    es.onopen = () => { $("events-state").textContent = "(live)"; };
    es.onmessage = (m) => {
      try {
        const e = JSON.parse(m.data);
        if (typeof e.seq === "number") lastEventSeq = e.seq;
        addEvent(e);
      } catch (x) { pageError("bad event: " + x); }
    };
    es.onerror = () => {
      if (es.readyState !== EventSource.CLOSED) {
        /* the browser reconnects by itself, resuming after the last id */
        $("events-state").textContent = "(reconnecting)";
        return;
      }
      /* refused (503: the node's stream limit) or gone: try again in 10 s */
      $("events-state").textContent = "(event stream unavailable; retrying)";
      es.close();
      es = null;
      esRetryAt = Date.now() + 10000;
    };
  }

  /* -------------------------------------------------------------- poll */

  async function poll() {
    try {
      const r = await fetch("/dashboard/data", { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const d = await r.json();
      const dt = prev ? (d.time_ms - prev.time_ms) / 1000 : 0;
      current = d;
      drawCluster(d);
      drawHealth(d, dt);
      drawOps(d, dt);
      drawRaft(d, dt);
      drawLsm(d);
      drawTop(d, dt);
      drawShards(d);
      prev = d;
      lastOk = Date.now();
      updates++;
      document.body.dataset.updates = String(updates);
      followEvents(d.events.last_seq);
    } catch (x) {
      const st = $("status");
      st.textContent = "unreachable";
      st.className = "pill down";
    }
    drawTimeline();
    const live = $("live");
    const age = lastOk ? Date.now() - lastOk : -1;
    live.textContent = age < 0 ? "no data yet" : age < 3000 ? "live" : "stale: last update " + fmtDur(age) + " ago";
    live.className = "live" + (age < 0 || age >= 3000 ? " stale" : "");
  }

  poll();
  setInterval(poll, POLL_MS);
})();
