// The broker's console: snapshots from console/events (Server-Sent Events), frames from camera/<id>/image.
// Plain ES module, no framework. Text from the broker is set with textContent only, never as HTML.

const THUMBNAIL_MS = 1000; // a thumbnail is fetched again at most this often
const DETAIL_MS = 500; // the larger view, about twice a second
const LINK_TIMEOUT_MS = 3500; // no snapshot for this long: the page says its link to the broker is lost
const COLOURS = ["#2fb463", "#ff8c1a", "#3b9cff", "#e052d6", "#f2d024", "#1fd1c1"];

const cards = new Map(); // identifier -> card (see makeCard)
let latest = null; // the last ConsoleState
let lastMessage = 0;
let detail = null; // {identifier, bitmap, loading, fetched}

const $ = (id) => document.getElementById(id);

function imageUrl(identifier) {
  return `camera/${encodeURIComponent(identifier)}/image?t=${Date.now()}`;
}

async function fetchFrame(identifier) {
  const response = await fetch(imageUrl(identifier), { cache: "no-store" });
  if (!response.ok) return null;
  return createImageBitmap(await response.blob());
}

// ---- formatting -------------------------------------------------------------------------------

function clock(epoch) {
  return new Date(epoch * 1000).toLocaleTimeString();
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "no frame yet";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

function stateClass(state) {
  return `state-${state.replace(" ", "-")}`;
}

function eventText(event) {
  if (!event) return "none yet";
  const what = [event.brand ?? "?", event.body_type ?? "?", ...(event.license_plate ? [event.license_plate] : [])]
    .join(" · ");
  return `${what} · ${clock(event.captured_at)} · visit ${event.visit.slice(0, 8)}${event.update ? " (update)" : ""}`;
}

function facts(camera, full) {
  const rows = [
    ["fps", camera.state === "online" ? camera.fps.toFixed(1) : "–"], // a stream going down reports odd rates
    ["frames", String(camera.frames)],
    ["reconnects", String(camera.reconnects)],
    ["frame age", age(camera.frame_age_s)],
    ["model", `${camera.model_name} (#${camera.model_id})`],
    ["session", camera.session_id === null ? "none" : String(camera.session_id)],
    ["last event", eventText(camera.last_event)],
  ];
  if (full) {
    const boxes = camera.sighting?.boxes ?? [];
    rows.push(
      ["stream", camera.stream],
      ["camera pod", camera.pod ?? "not running"],
      ["stage", camera.stage ?? "none"],
      ["crop", camera.crop ? `${camera.crop.x1},${camera.crop.y1} – ${camera.crop.x2},${camera.crop.y2}` : "none"],
      ["boxes", boxes.map((b) => `${b.label} ${b.confidence.toFixed(2)}`).join(", ") || "none"],
    );
    if (camera.last_event) rows.push(["fields", JSON.stringify(camera.last_event.fields)]);
  }
  return rows;
}

function fillFacts(list, rows) {
  const elements = [];
  for (const [name, value] of rows) {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = value;
    dd.dataset.fact = name;
    elements.push(dt, dd);
  }
  list.replaceChildren(...elements);
}

// ---- drawing ----------------------------------------------------------------------------------

function colour(label) {
  let hash = 0;
  for (const char of label) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return COLOURS[hash % COLOURS.length];
}

function draw(canvas, bitmap, camera) {
  const context = canvas.getContext("2d");
  if (!bitmap) {
    canvas.width = 640;
    canvas.height = 480;
    context.fillStyle = "#000";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.fillStyle = "#8b96a1";
    context.font = "24px sans-serif";
    context.fillText(camera.frames ? "loading frame…" : "no frame yet", 24, 48);
    return;
  }
  if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
  }
  context.drawImage(bitmap, 0, 0);
  const unit = Math.max(1, bitmap.width / 640);
  if (camera.crop) {
    const { x1, y1, x2, y2 } = camera.crop;
    context.setLineDash([8 * unit, 6 * unit]);
    context.lineWidth = 2 * unit;
    context.strokeStyle = "#f2f2f2";
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    context.setLineDash([]);
  }
  context.font = `${Math.round(14 * unit)}px sans-serif`;
  context.textBaseline = "bottom";
  for (const box of camera.sighting?.boxes ?? []) {
    const text = `${box.label} ${box.confidence.toFixed(2)}`;
    context.strokeStyle = context.fillStyle = colour(box.label);
    context.lineWidth = 3 * unit;
    context.strokeRect(box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1);
    const width = context.measureText(text).width + 8 * unit;
    const top = Math.max(18 * unit, box.y1);
    context.fillRect(box.x1, top - 18 * unit, width, 18 * unit);
    context.fillStyle = "#000";
    context.fillText(text, box.x1 + 4 * unit, top - 2 * unit);
  }
  if (camera.state !== "online") {
    context.fillStyle = "rgb(0 0 0 / 45%)";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.fillStyle = "#fff";
    context.font = `bold ${Math.round(28 * unit)}px sans-serif`;
    context.fillText(camera.state.toUpperCase(), 20 * unit, canvas.height - 20 * unit);
  }
}

// ---- cards ------------------------------------------------------------------------------------

function makeCard(identifier) {
  const root = document.createElement("article");
  root.className = "card";
  root.dataset.identifier = identifier;
  root.dataset.images = "0";
  root.tabIndex = 0;
  const canvas = document.createElement("canvas");
  const body = document.createElement("div");
  body.className = "body";
  const title = document.createElement("div");
  title.className = "title";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = identifier;
  const badge = document.createElement("span");
  badge.className = "badge";
  title.append(name, badge);
  const reason = document.createElement("div");
  reason.className = "reason";
  const list = document.createElement("dl");
  list.className = "facts";
  body.append(title, reason, list);
  root.append(canvas, body);
  root.addEventListener("click", () => openDetail(identifier));
  root.addEventListener("keydown", (event) => event.key === "Enter" && openDetail(identifier));
  return { root, canvas, badge, reason, list, bitmap: null, loading: false, fetched: 0, camera: null };
}

function updateCard(card, camera) {
  card.camera = camera;
  card.root.className = `card ${stateClass(camera.state)}`;
  card.root.dataset.state = camera.state;
  card.badge.className = `badge ${stateClass(camera.state)}`;
  card.badge.textContent = camera.state;
  card.reason.textContent = camera.reason ?? "";
  fillFacts(card.list, facts(camera, false));
  draw(card.canvas, card.bitmap, camera);
}

async function refreshThumbnail(card) {
  const camera = card.camera;
  const fresh = camera && camera.frame_age_s !== null && (camera.state === "online" || !card.bitmap);
  if (!fresh || card.loading || Date.now() - card.fetched < THUMBNAIL_MS) return;
  card.loading = true;
  card.fetched = Date.now();
  try {
    const bitmap = await fetchFrame(camera.identifier);
    if (bitmap) {
      card.bitmap = bitmap;
      card.root.dataset.images = String(Number(card.root.dataset.images) + 1);
      draw(card.canvas, bitmap, card.camera);
    }
  } catch {
    // the next round tries again
  } finally {
    card.loading = false;
  }
}

// ---- the larger view --------------------------------------------------------------------------

function openDetail(identifier) {
  detail = { identifier, bitmap: cards.get(identifier)?.bitmap ?? null, loading: false, fetched: 0 };
  $("detail").showModal();
  renderDetail();
  refreshDetail();
}

function renderDetail() {
  const camera = detail && cards.get(detail.identifier)?.camera;
  if (!camera) return;
  $("detail-title").textContent = camera.identifier;
  $("detail-state").textContent = camera.reason ? `${camera.state}: ${camera.reason}` : camera.state;
  $("detail-state").className = `badge ${stateClass(camera.state)}`;
  fillFacts($("detail-facts"), facts(camera, true));
  draw($("detail-canvas"), detail.bitmap, camera);
}

async function refreshDetail() {
  if (!detail || detail.loading || Date.now() - detail.fetched < DETAIL_MS) return;
  const current = detail;
  current.loading = true;
  current.fetched = Date.now();
  try {
    const bitmap = await fetchFrame(current.identifier);
    if (bitmap && detail === current) {
      current.bitmap = bitmap;
      $("detail-canvas").dataset.images = String(Number($("detail-canvas").dataset.images ?? 0) + 1);
      renderDetail();
    }
  } catch {
    // the next round tries again
  } finally {
    current.loading = false;
  }
}

// ---- the whole page ---------------------------------------------------------------------------

function renderBackend(state) {
  const backend = state.backend;
  const since = `${clock(backend.since)} (${age(state.now - backend.since)} ago)`;
  $("backend").textContent = backend.connected ? `backend connected since ${since}` : `no backend since ${since}`;
  $("backend").className = `pill ${backend.connected ? "backend-up" : "backend-down"}`;
  $("backend").dataset.connected = String(backend.connected);
  $("backlog").textContent = `backlog: ${backend.backlog} message${backend.backlog === 1 ? "" : "s"}`;
  const online = state.cameras.filter((camera) => camera.state === "online").length;
  $("summary").textContent = `${state.cameras.length} subscriptions, ${online} online · ${state.runner} runner`;
}

function renderRefused(refused) {
  $("refusals").hidden = refused.length === 0;
  $("refused").replaceChildren(...refused.map((refusal) => {
    const row = document.createElement("tr");
    for (const value of [refusal.entry, refusal.reason, refusal.detail, clock(refusal.since)]) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.append(cell);
    }
    return row;
  }));
}

function render(state) {
  latest = state;
  renderBackend(state);
  const seen = new Set();
  for (const camera of state.cameras) {
    seen.add(camera.identifier);
    let card = cards.get(camera.identifier);
    if (!card) {
      card = makeCard(camera.identifier);
      cards.set(camera.identifier, card);
    }
    updateCard(card, camera);
  }
  for (const [identifier, card] of cards) {
    if (!seen.has(identifier)) {
      cards.delete(identifier);
    }
  }
  // In the broker's order (by identifier); appending an element already there moves it.
  $("cameras").replaceChildren(...state.cameras.map((camera) => cards.get(camera.identifier).root));
  $("empty").hidden = state.cameras.length > 0;
  renderRefused(state.refused);
  if (detail) renderDetail();
}

function setLink(up, text) {
  $("link").textContent = text;
  $("link").className = `pill ${up ? "link-up" : "link-down"}`;
  document.body.dataset.link = up ? "up" : "down";
  $("cameras").classList.toggle("stale", !up);
}

function connect() {
  const source = new EventSource("console/events");
  source.addEventListener("state", (message) => {
    lastMessage = Date.now();
    setLink(true, "live");
    render(JSON.parse(message.data));
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      setLink(false, "disconnected: reload the page (with ?token=… if the broker asks for one)");
    } else {
      setLink(false, "reconnecting…");
    }
  });
}

function tick() {
  if (lastMessage && Date.now() - lastMessage > LINK_TIMEOUT_MS) setLink(false, "no news from the broker");
  for (const card of cards.values()) refreshThumbnail(card);
  if (detail && $("detail").open) refreshDetail();
}

$("detail-close").addEventListener("click", () => $("detail").close());
$("detail").addEventListener("click", (event) => event.target === $("detail") && $("detail").close());
$("detail").addEventListener("close", () => {
  detail = null;
});
connect();
setInterval(tick, 250);
window.consoleState = () => latest; // for tests and the curious: the last snapshot
