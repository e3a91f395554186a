// The admin monitor: polls /state with the admin token and draws what it says. No build
// step, no dependency; every text goes in with textContent, never as HTML.
(function () {
  "use strict";
  const POLL_MS = 1000;
  const SERIES = ["registration", "submission", "live_in"];
  const $ = (id) => document.getElementById(id);
  let token = "";
  let timer = null;

  // A token given in the URL's fragment (never sent to a server) is kept for this tab.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem("architect-admin-token", fragment.get("token"));
    history.replaceState(null, "", location.pathname);
  }
  token = sessionStorage.getItem("architect-admin-token") || "";

  function headers() {
    const h = { "Content-Type": "application/json" };
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function fillCounts(table, counts) {
    const body = table.tBodies[0];
    body.replaceChildren();
    const names = Object.keys(counts || {}).sort();
    for (const name of names) {
      const row = body.insertRow();
      row.dataset.status = name;
      cell(row, name);
      cell(row, counts[name], "count");
    }
    if (!names.length) cell(body.insertRow(), "none");
  }

  function ago(now, then) {
    if (then === null || then === undefined) return "never";
    return Math.max(0, Math.round(now - then)) + " s ago";
  }

  function fillAgents(state) {
    const body = $("agents").tBodies[0];
    body.replaceChildren();
    for (const agent of state.agents) {
      const row = body.insertRow();
      row.dataset.agentId = agent.agent_id;
      cell(row, agent.agent_id, "agent-id");
      cell(row, agent.worker, "worker");
      cell(row, agent.status, "status");
      const connected = agent.connected === undefined ? "" : agent.connected ? "yes" : "no";
      cell(row, connected, "connected connected-" + connected);
      cell(row, agent.connected === undefined ? "" : ago(state.now, agent.last_heartbeat),
           "heartbeat");
      cell(row, agent.room, "room");
      const actions = cell(row, "");
      if (state.runs.backend && agent.kind !== undefined) {
        const button = document.createElement("button");
        button.textContent = "Expire";
        button.className = "expire";
        button.addEventListener("click", () =>
          act("expire_agent", { agent_id: agent.agent_id }));
        actions.appendChild(button);
      }
    }
  }

  function details(event) {
    if (event.event === "registration") return event.outcome + (event.reason ? " (" + event.reason + ")" : "");
    if (event.event === "submission") return event.kind + ": " + event.outcome + (event.reason ? " (" + event.reason + ")" : "");
    if (event.event === "browser_error") return event.error;
    return "";
  }

  function fillRecent(state) {
    const body = $("recent").tBodies[0];
    body.replaceChildren();
    for (const event of state.recent) {
      const row = body.insertRow();
      row.className = "event-" + event.event;
      cell(row, new Date(event.time * 1000).toLocaleTimeString());
      cell(row, event.event, "event");
      cell(row, event.agent_id, "agent-id");
      cell(row, details(event), "details");
    }
  }

  function drawPlot(slices) {
    const svg = $("plot");
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    const width = 420, height = 120, pad = 4;
    let top = 1;
    for (const slice of slices) for (const s of SERIES) top = Math.max(top, slice[s] || 0);
    const step = (width - 2 * pad) / Math.max(1, slices.length - 1);
    const axis = document.createElementNS(ns, "line");
    axis.setAttribute("class", "axis");
    axis.setAttribute("x1", pad); axis.setAttribute("x2", width - pad);
    axis.setAttribute("y1", height - pad); axis.setAttribute("y2", height - pad);
    svg.appendChild(axis);
    for (const s of SERIES) {
      const points = slices.map((slice, i) =>
        (pad + i * step).toFixed(1) + "," +
        (height - pad - ((slice[s] || 0) / top) * (height - 2 * pad)).toFixed(1));
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("class", s);
      line.setAttribute("fill", "none");
      line.setAttribute("stroke-width", "2");
      line.setAttribute("points", points.join(" "));
      svg.appendChild(line);
    }
    const legend = $("legend");
    legend.replaceChildren();
    for (const s of SERIES) {
      const total = slices.reduce((sum, slice) => sum + (slice[s] || 0), 0);
      const item = document.createElement("span");
      item.className = s + "-legend";
      item.textContent = s.replace("_", " ") + ": " + total;
      legend.appendChild(item);
    }
  }

  function fillSettings(settings, force) {
    if (!settings) return;
    for (const key of Object.keys(settings)) {
      const input = $(key);
      if (input && (force || document.activeElement !== input)) input.value = settings[key];
    }
  }

  let settingsShown = false;

  function draw(state) {
    $("run").textContent = state.task_run ? "task run " + state.task_run : "router only";
    const link = $("link");
    if (state.backend_connected === null) {
      link.textContent = "backend in this process";
      link.className = "badge ok";
    } else {
      link.textContent = state.backend_connected ? "backend connected" : "no backend";
      link.className = "badge " + (state.backend_connected ? "ok" : "bad");
    }
    if (state.draining) { link.textContent = "stopping"; link.className = "badge bad"; }
    $("updated").textContent = "updated " + new Date(state.now * 1000).toLocaleTimeString();
    fillCounts($("units"), state.units);
    fillCounts($("agent-counts"), state.agents_by_status);
    fillAgents(state);
    fillRecent(state);
    drawPlot(state.throughput);
    fillSettings(state.settings, !settingsShown);
    settingsShown = settingsShown || !!state.settings;
    $("block-form").hidden = $("settings-form").hidden = $("units-form").hidden = !state.runs.backend;
  }

  async function poll() {
    try {
      const response = await fetch("/state", { headers: headers(), cache: "no-store" });
      if (response.status === 401) { askForToken(token ? "that token was refused" : ""); return; }
      if (!response.ok) throw new Error("the daemon answered " + response.status);
      $("login").hidden = true;
      $("monitor").hidden = false;
      draw(await response.json());
    } catch (error) {
      $("updated").textContent = "not reachable: " + error.message;
    }
    timer = setTimeout(poll, POLL_MS);
  }

  async function act(name, body) {
    const result = $("control-result");
    try {
      const response = await fetch("/control/" + name, {
        method: "POST", headers: headers(), body: JSON.stringify(body),
      });
      const answer = await response.json();
      result.textContent = response.ok ? name + ": " + JSON.stringify(answer) : "refused: " + answer.error;
      if (response.ok && answer && "maximum_units_per_worker" in answer) fillSettings(answer, true);
    } catch (error) {
      result.textContent = "failed: " + error.message;
    }
  }

  function askForToken(problem) {
    clearTimeout(timer);
    $("monitor").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = problem;
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value;
    sessionStorage.setItem("architect-admin-token", token);
    poll();
  });

  $("block-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const action = event.submitter ? event.submitter.dataset.action : "block_worker";
    act(action, { worker: $("worker-name").value });
  });

  $("settings-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = {};
    for (const key of ["maximum_units_per_worker", "allowed_concurrent", "timeout"]) {
      const value = $(key).value;
      if (value !== "") body[key] = Number(value);
    }
    act("settings", body);
  });

  // A JSON list of assignment data objects, or JSONL (one object per line), as [task] units.
  function unitsIn(text) {
    try {
      const whole = JSON.parse(text);
      if (Array.isArray(whole)) return whole;
    } catch (error) { /* not one JSON document: JSONL */ }
    return text.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
  }

  $("units-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("units-file").files[0];
    if (!file) return;
    let units;
    try {
      units = unitsIn(await file.text());
    } catch (error) {
      $("control-result").textContent = "not JSON or JSONL: " + error.message;
      return;
    }
    act("add_units", { units: units });
  });

  poll();
})();
