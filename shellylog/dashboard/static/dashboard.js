// shellylog's dashboard: the fleet's live power (../api/fleet, every 2 s, a page at a
// time, filtered by id) and one channel's day as a chart and a table of runs (../api/day,
// every 30 s).
//
// Plain JavaScript, no build step. Every URL is relative, so that the page works behind a
// reverse proxy's path prefix. Times are shown as the server writes them (in its --tz),
// and "today" is the server's: the browser's clock and time zone are never used.
"use strict";

(() => {
  const FLEET_EVERY_MS = 2000;
  const DAY_EVERY_MS = 30000;
  // Typing in the filter asks the server once the typing pauses this long.
  const FILTER_AFTER_MS = 300;
  const FLEET_URL = "../api/fleet";
  // The server's longest ?q=.
  const FILTER_MAX = 64;

  const $ = (id) => document.getElementById(id);
  const fleetTable = $("fleet");
  const chartBox = $("chart");
  const runsBody = $("runs").querySelector("tbody");
  const dayInput = $("day");
  const updated = $("updated");
  const errorLine = $("error");
  const filterInput = $("filter");
  const moreLine = $("more");

  // What was last heard from the server.
  let serverTz = null;
  let serverToday = null;
  let polls = 0;
  // The selection: {device, channel, date (or null: the server's today)}.
  let selected = null;
  // The uPlot chart of the selection's day, and which answer of /api/day is the latest.
  let chart = null;
  let dayRequest = 0;
  let dayTimer = null;
  // A channel was clicked: show its day when it comes.
  let revealDay = false;
  // Errors by their source ("fleet", "day"), shown together.
  const errors = new Map();
  // The fleet's page: devices skipped, the filter's text, and the page's size, which the
  // page's own address may set (dashboard/?limit=50; else the server's default).
  let pageOffset = 0;
  let filterText = "";
  const pageLimit = (() => {
    const text = new URLSearchParams(location.search).get("limit") || "";
    return /^[1-9][0-9]{0,3}$/.test(text) && Number(text) <= 1000 ? Number(text) : null;
  })();
  // The last page shown ({offset, limit, total, next}), which answer of /api/fleet is the
  // latest, and the next poll.
  let lastPage = null;
  let fleetRequest = 0;
  let fleetTimer = null;
  let filterTimer = null;

  // -- small helpers ---------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      node.append(child);
    }
    return node;
  }

  // An ISO time as the server wrote it (in its zone): "14:03", or "29 Nov 14:03" for
  // another day than the server's today.
  function shortTime(iso, withSeconds) {
    if (!iso) return "–";
    const day = iso.slice(0, 10);
    const time = iso.slice(11, withSeconds ? 19 : 16);
    return day === serverToday ? time : `${day} ${time}`;
  }

  function watts(value) {
    if (value === null || value === undefined) return "–";
    const digits = Math.abs(value) >= 100 ? 0 : 1;
    return `${value.toFixed(digits)} W`;
  }

  function wattHours(value) {
    if (value === null || value === undefined) return "–";
    return value >= 1000 ? `${(value / 1000).toFixed(2)} kWh` : `${value.toFixed(1)} Wh`;
  }

  function showErrors() {
    const text = [...errors.values()].join(" · ");
    errorLine.textContent = text;
    errorLine.hidden = text === "";
  }

  function setError(source, message) {
    if (message) errors.set(source, message);
    else errors.delete(source);
    showErrors();
  }

  // GET a JSON document; a failed answer throws an Error saying what the server said.
  async function getJson(url) {
    let response;
    try {
      response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
    } catch (e) {
      throw new Error(`${url}: the server cannot be reached (${e.message})`);
    }
    if (!response.ok) {
      // The server's own messages are plain text; an HTML page (a proxy's) is not shown.
      let text = "";
      if ((response.headers.get("content-type") || "").startsWith("text/plain")) {
        try {
          text = (await response.text()).trim().slice(0, 300);
        } catch (e) {
          text = "";
        }
      }
      throw new Error(`${url}: ${response.status} ${response.statusText}${text ? ": " + text : ""}`);
    }
    return response.json();
  }

  // -- the selection, kept in the URL's hash ------------------------------------------

  function readHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const device = params.get("device");
    const channel = params.get("channel");
    if (!device || !channel) return null;
    const date = params.get("date");
    return { device, channel, date: /^\d{4}-\d{2}-\d{2}$/.test(date || "") ? date : null };
  }

  function writeHash(selection) {
    // Written as people write it (channel=switch:0, not switch%3A0); read back by
    // URLSearchParams either way.
    const part = (name, value) =>
      `${name}=${encodeURIComponent(value).replace(/%3A/g, ":")}`;
    const parts = [part("device", selection.device), part("channel", selection.channel)];
    if (selection.date) parts.push(part("date", selection.date));
    const hash = "#" + parts.join("&");
    if (location.hash !== hash) {
      location.hash = hash; // hashchange selects it
    } else {
      select(selection);
    }
  }

  function sameSelection(a, b) {
    return a && b && a.device === b.device && a.channel === b.channel && a.date === b.date;
  }

  function select(selection) {
    if (sameSelection(selection, selected)) return;
    selected = selection;
    markSelectedRow();
    if (!selection) return;
    $("hint").hidden = true;
    $("day-title").textContent = `${selection.device} · ${selection.channel}`;
    if (selection.date) dayInput.value = selection.date;
    else if (serverToday) dayInput.value = serverToday;
    loadDay();
  }

  function markSelectedRow() {
    for (const row of fleetTable.querySelectorAll("tr.channel")) {
      const on = !!selected && row.dataset.device === selected.device &&
        row.dataset.channel === selected.channel;
      row.classList.toggle("selected", on);
      if (on) row.setAttribute("aria-current", "true");
      else row.removeAttribute("aria-current");
    }
  }

  // -- the fleet ------------------------------------------------------------------------

  // The tbody of each device, and the row of each of its channels, kept across polls so
  // that the page changes in place.
  const deviceBodies = new Map();
  // Each tbody's channel rows, by channel.
  const channelRows = new WeakMap();

  function deviceBody(id) {
    let body = deviceBodies.get(id);
    if (!body) {
      const name = el("span", { class: "name" });
      const badge = el("span", { class: "badge" });
      const when = el("span", { class: "when" });
      const header = el("tr", { class: "device" }, el("th", { colspan: "3" }, name, badge, when));
      name.textContent = id;
      body = el("tbody", { "data-device": id }, header);
      channelRows.set(body, new Map());
      deviceBodies.set(id, body);
    }
    return body;
  }

  function channelRow(body, id, channel) {
    const rows = channelRows.get(body);
    let row = rows.get(channel);
    if (!row) {
      const name = el("td", { class: "channel-name" });
      name.textContent = channel;
      row = el("tr", {
        class: "channel", "data-device": id, "data-channel": channel, tabindex: "0",
      }, name, el("td", { class: "power" }), el("td", { class: "state" }));
      row.addEventListener("click", () => chooseChannel(id, channel));
      row.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          chooseChannel(id, channel);
        }
      });
      rows.set(channel, row);
    }
    return row;
  }

  function chooseChannel(device, channel) {
    // Another channel on the day chosen (before any channel, too), or else the server's
    // today.
    const chosen = dayInput.value && dayInput.value !== serverToday ? dayInput.value : null;
    revealDay = true;
    writeHash({ device, channel, date: selected ? selected.date : chosen });
  }

  // On a phone the day is below the fleet: once shown, it is brought into view (when it
  // is not already).
  function reveal() {
    if (!revealDay) return;
    revealDay = false;
    const section = $("channel-day");
    if (section.getBoundingClientRect().top > window.innerHeight * 0.6) {
      section.scrollIntoView({ block: "start" });
    }
  }

  function showFleet(fleet) {
    serverTz = fleet.tz;
    serverToday = fleet.today;
    if (!dayInput.value) dayInput.value = fleet.today;
    dayInput.max = fleet.today;
    const seen = new Set();
    let previous = fleetTable.tHead;
    for (const device of fleet.devices) {
      const id = device.device_id;
      seen.add(id);
      const body = deviceBody(id);
      body.dataset.connected = device.connected ? "true" : "false";
      body.querySelector(".badge").textContent = device.connected ? "connected" : "not connected";
      body.querySelector(".when").textContent = device.connected
        ? `since ${shortTime(device.connected_since)} · last frame ${shortTime(device.last_frame_at, true)}`
        : `left ${shortTime(device.left_at)} · last frame ${shortTime(device.last_frame_at, true)}`;
      const channels = new Set();
      let last = body.rows[0];
      for (const entry of device.channels) {
        channels.add(entry.channel);
        const row = channelRow(body, id, entry.channel);
        row.dataset.running = entry.running ? "true" : "false";
        row.dataset.power = entry.apower_W === null ? "" : String(entry.apower_W);
        row.querySelector(".power").textContent = watts(entry.apower_W);
        row.querySelector(".state").textContent = entry.running
          ? `running since ${shortTime(entry.run_since)}` : "idle";
        row.title = "Show this channel's day; " + (entry.last_minute_written
          ? `last minute written ${shortTime(entry.last_minute_written)}` : "no minute written yet");
        if (last.nextSibling !== row) last.after(row);
        last = row;
      }
      const rows = channelRows.get(body);
      for (const [channel, row] of rows) {
        if (!channels.has(channel)) {
          row.remove();
          rows.delete(channel);
        }
      }
      if (previous.nextSibling !== body) previous.after(body);
      previous = body;
    }
    for (const [id, body] of deviceBodies) {
      if (!seen.has(id)) {
        body.remove();
        deviceBodies.delete(id);
      }
    }
    showMore(fleet);
    markSelectedRow();
    polls += 1;
    updated.dataset.polls = String(polls);
    updated.textContent = `server time ${fleet.now.slice(0, 10)} ${fleet.now.slice(11, 19)} (${fleet.tz})`;
  }

  // Whether there is more than the page shows ("showing N of TOTAL devices", with the
  // buttons to page through), and why the table is empty if it is.
  function showMore(fleet) {
    const page = fleet.page || { offset: 0, limit: fleet.devices.length, total: fleet.devices.length, next: null };
    const shown = fleet.devices.length;
    lastPage = page;
    moreLine.hidden = page.total <= shown;
    moreLine.dataset.offset = String(page.offset);
    $("more-text").textContent = `showing ${shown} of ${page.total} devices`;
    $("prev").disabled = page.offset === 0;
    $("next").disabled = page.next === null;
    const known = fleet.devices_known === undefined ? shown : fleet.devices_known;
    $("no-devices").hidden = known > 0;
    const noMatch = $("no-match");
    noMatch.hidden = !(known > 0 && page.total === 0 && filterText);
    noMatch.textContent = `No device id contains “${filterText}”.`;
  }

  function fleetUrl() {
    const params = new URLSearchParams();
    if (pageOffset > 0) params.set("offset", String(pageOffset));
    if (pageLimit !== null) params.set("limit", String(pageLimit));
    if (filterText) params.set("q", filterText);
    const query = params.toString();
    return query ? `${FLEET_URL}?${query}` : FLEET_URL;
  }

  // Poll now (and every FLEET_EVERY_MS after): a newer poll makes an older answer moot.
  async function pollFleet() {
    clearTimeout(fleetTimer);
    const request = ++fleetRequest;
    try {
      const fleet = await getJson(fleetUrl());
      if (request !== fleetRequest) return; // another page or filter since
      const page = fleet.page;
      if (page && fleet.devices.length === 0 && page.total > 0 && page.offset > 0) {
        // Devices left the filter or the fleet, and this page with them: the last page.
        const last = Math.floor((page.total - 1) / page.limit) * page.limit;
        if (last < pageOffset) {
          pageOffset = last;
          pollFleet();
          return;
        }
      }
      showFleet(fleet);
      setError("fleet", null);
    } catch (e) {
      if (request !== fleetRequest) return;
      setError("fleet", e.message);
    }
    fleetTimer = setTimeout(pollFleet, FLEET_EVERY_MS);
  }

  function turnPage(offset) {
    pageOffset = Math.max(0, offset);
    pollFleet();
  }

  // -- one channel's day -----------------------------------------------------------------

  function dayUrl(selection) {
    const params = new URLSearchParams({ device: selection.device, channel: selection.channel });
    if (selection.date) params.set("date", selection.date);
    return `../api/day?${params.toString()}`;
  }

  async function loadDay() {
    clearTimeout(dayTimer);
    const selection = selected;
    if (!selection) return;
    const request = ++dayRequest;
    try {
      const day = await getJson(dayUrl(selection));
      if (request !== dayRequest) return; // another selection since
      showDay(day);
      setError("day", null);
    } catch (e) {
      if (request !== dayRequest) return;
      setError("day", e.message);
      reveal();
    }
    dayTimer = setTimeout(loadDay, DAY_EVERY_MS);
  }

  // The day's minutes as uPlot's columns: a null after each minute not followed by the
  // next, so that the line breaks where the log has no row (the channel was idle).
  function chartColumns(points) {
    const times = [];
    const watts = [];
    const t = points.time;
    const w = points.apower_W;
    for (let i = 0; i < t.length; i++) {
      times.push(t[i]);
      watts.push(w[i]);
      if (i + 1 === t.length || t[i + 1] > t[i] + 60) {
        times.push(t[i] + 60);
        watts.push(null);
      }
    }
    return [times, watts];
  }

  function chartWidth() {
    return Math.max(chartBox.clientWidth || 0, 200);
  }

  function chartHeight() {
    return Math.round(Math.min(320, Math.max(180, chartWidth() * 0.55)));
  }

  const pad = (n) => String(n).padStart(2, "0");

  // Unix seconds as a Date whose fields read as the time in the server's zone (uPlot's
  // way), or in the browser's zone if this browser does not know the server's.
  function zoned(tz) {
    if (tz) {
      try {
        uPlot.tzDate(new Date(0), tz);
        return (ts) => uPlot.tzDate(new Date(ts * 1000), tz);
      } catch (e) {
        // An unknown zone in this browser: its own zone then.
      }
    }
    return (ts) => new Date(ts * 1000);
  }

  function drawChart(day) {
    const data = chartColumns(day.points);
    if (chart) {
      chart.destroy();
      chart = null;
    }
    chartBox.textContent = "";
    if (day.points.time.length === 0) {
      chartBox.append(el("p", { class: "note" }, "No minute logged on this day."));
      return;
    }
    const tzDate = zoned(day.tz || serverTz);
    const clock = (ts) => {
      const d = tzDate(ts);
      return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    };
    // The whole day, from its midnight in the server's zone (a day of 25 hours at the
    // end of summer time: to its last minute).
    const first = day.points.time[0];
    const firstDate = tzDate(first);
    const midnight = first - firstDate.getHours() * 3600 - firstDate.getMinutes() * 60 -
      firstDate.getSeconds();
    const end = Math.max(midnight + 86400, data[0][data[0].length - 1]);
    const options = {
      width: chartWidth(),
      height: chartHeight(),
      tzDate,
      scales: {
        x: { time: true, range: () => [midnight, end] },
        // Power from 0 (or below, for a channel that exports): a pump at 740 W does not
        // look like one that stops.
        y: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.08 : 1] },
      },
      series: [
        { label: "time", value: (u, v) => (v === null || v === undefined ? "–" : clock(v)) },
        {
          label: "power",
          stroke: "#1769aa",
          fill: "rgba(23, 105, 170, 0.3)",
          width: 2,
          paths: uPlot.paths.stepped({ align: 1 }),
          value: (u, v) => (v === null || v === undefined ? "–" : `${v} W`),
        },
      ],
      axes: [
        { values: (u, ticks) => ticks.map(clock) },
        { values: (u, ticks) => ticks.map((v) => `${v} W`), size: 64 },
      ],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
    };
    chart = new uPlot(options, data, chartBox);
  }

  function showRuns(runs) {
    runsBody.textContent = "";
    if (runs.length === 0) {
      const cell = el("td", { colspan: "4", class: "note" });
      cell.textContent = "No run on this day.";
      runsBody.append(el("tr", { class: "empty" }, cell));
      return;
    }
    for (const run of runs) {
      const start = el("td");
      const end = el("td");
      const minutes = el("td", { class: "num" });
      const energy = el("td", { class: "num" });
      start.textContent = run.start.slice(11, 16);
      // A run ending on the next day says so.
      end.textContent = run.end.slice(0, 10) === run.start.slice(0, 10)
        ? run.end.slice(11, 16) : `${run.end.slice(0, 10)} ${run.end.slice(11, 16)}`;
      minutes.textContent = String(run.minutes);
      energy.textContent = wattHours(run.energy_Wh);
      runsBody.append(el("tr", { class: "run", "data-start": run.start }, start, end, minutes, energy));
    }
  }

  function showDay(day) {
    drawChart(day);
    const plotted = day.points.apower_W.filter((v) => typeof v === "number").length;
    chartBox.dataset.device = day.device_id;
    chartBox.dataset.channel = day.channel;
    chartBox.dataset.date = day.date;
    chartBox.dataset.points = String(plotted);
    if (!selected || !selected.date) dayInput.value = day.date;
    $("energy").textContent = day.energy_Wh === null
      ? `${day.date}: no minute logged.`
      : `${day.date}: ${wattHours(day.energy_Wh)} in ${day.runs.length} run${day.runs.length === 1 ? "" : "s"}.`;
    showRuns(day.runs);
    reveal();
  }

  // -- start -------------------------------------------------------------------------------

  dayInput.addEventListener("change", () => {
    if (!selected) return;
    const date = dayInput.value || null;
    // The server's today is no chosen day: the page follows it over midnight.
    writeHash({ ...selected, date: date === serverToday ? null : date });
  });
  window.addEventListener("hashchange", () => select(readHash()));
  filterInput.addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      const text = filterInput.value.trim().slice(0, FILTER_MAX);
      if (text === filterText) return;
      filterText = text;
      turnPage(0);
    }, FILTER_AFTER_MS);
  });
  $("prev").addEventListener("click", () => {
    if (lastPage) turnPage(lastPage.offset - lastPage.limit);
  });
  $("next").addEventListener("click", () => {
    if (lastPage && lastPage.next !== null) turnPage(lastPage.next);
  });
  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => {
      if (chart) chart.setSize({ width: chartWidth(), height: chartHeight() });
    }).observe(chartBox);
  }

  select(readHash());
  pollFleet();
})();
