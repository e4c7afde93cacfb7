// derain serve: the page. Uploads photos one by one (raw bytes as the request body), follows the queue by
// polling /api/jobs, and shows a finished photo with a before/after slider and a loupe.
"use strict";

const $ = (id) => document.getElementById(id);
const entries = [];          // one per photo the user added, in order
let config = null;
let selected = null;         // the entry shown in the viewer
let uploads = Promise.resolve();  // uploads run one after another, so the queue keeps the user's order
let polling = false;

// Download formats: PNG keeps every bit (16-bit when the photo was); JPEG (the photo's own settings when it
// was a JPEG) and WebP are a fraction of its size.
const FORMATS = { png: { label: "PNG", suffix: "png" }, jpeg: { label: "JPEG", suffix: "jpg" }, webp: { label: "WebP", suffix: "webp" } };
const STAGES = { decoding: "reading the photo", "removing rain": "removing rain", encoding: "saving the result" };

function megabytes(bytes) { return (bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0); }

// ---- model and task menus -------------------------------------------------------------------------------
function currentModel() { return config.models.find((m) => m.name === $("model").value); }

function showTasks() {
  // The task menu only matters for all-in-one models, which declare their tasks.
  const tasks = currentModel().tasks;
  $("task-label").hidden = tasks.length === 0;
  $("task").replaceChildren(...tasks.map((t) => new Option(t, t)));
}

async function loadConfig() {
  const response = await fetch("/api/config");
  config = await response.json();
  $("model").replaceChildren(...config.models.map((m) => new Option(m.label, m.name)));
  $("model").value = config.default_model;
  $("model").addEventListener("change", showTasks);
  showTasks();
  $("limits").textContent = `PNG, JPEG, WebP or TIFF; up to ${megabytes(config.max_upload_bytes)} MB and ` +
    `${config.max_megapixels} megapixels per photo. Large photos run in ${config.tile}-pixel tiles.`;
}

// ---- the list of photos ---------------------------------------------------------------------------------
function newEntry(name) {
  const li = document.createElement("li");
  li.className = "job";
  li.innerHTML = '<div class="top"><span class="name"></span>' +
    '<button class="remove" title="remove from the list" aria-label="remove">×</button></div>' +
    '<div class="status"></div><progress max="1" value="0"></progress>';
  li.querySelector(".name").textContent = name;
  li.querySelector(".name").title = name;
  const entry = { name, li, id: null, state: "uploading" };
  li.querySelector(".remove").addEventListener("click", (event) => { event.stopPropagation(); removeEntry(entry); });
  li.addEventListener("click", () => { if (entry.state === "done") show(entry); });
  entries.push(entry);
  $("jobs").append(li);
  $("empty").hidden = true;
  setState(entry, "uploading", "uploading…");
  return entry;
}

function setState(entry, state, text, done = 0, total = 0) {
  entry.state = state;
  entry.li.dataset.state = state;
  entry.li.querySelector(".status").textContent = text;
  const bar = entry.li.querySelector("progress");
  if (total > 0) { bar.max = total; bar.value = done; } else { bar.removeAttribute("value"); }
}

function fail(entry, message) { setState(entry, "failed", message); }

function render(entry, job) {
  entry.id = job.id;
  entry.li.dataset.job = job.id;
  entry.width = job.width;
  entry.height = job.height;
  if (job.state === "queued") {
    setState(entry, "queued", job.ahead > 0 ? `waiting (${job.ahead} photo${job.ahead > 1 ? "s" : ""} ahead)` : "waiting");
  } else if (job.state === "running") {
    const stage = STAGES[job.stage] || job.stage;
    const tiles = job.tiles_total > 1 ? `: tile ${job.tiles_done} of ${job.tiles_total}` : "…";
    setState(entry, "running", stage + (job.stage === "removing rain" ? tiles : "…"), job.tiles_done, job.tiles_total);
  } else if (job.state === "done") {
    const wasDone = entry.state === "done";
    setState(entry, "done", `done in ${job.seconds.toFixed(1)} s (${job.width}×${job.height}); click to view`);
    if (!wasDone && ($("viewer").hidden || selected === null)) show(entry);
  } else if (job.state === "failed") {
    fail(entry, `failed: ${job.error}`);
  }
}

async function removeEntry(entry) {
  entries.splice(entries.indexOf(entry), 1);
  entry.li.remove();
  $("empty").hidden = entries.length > 0;
  if (selected === entry) { selected = null; $("viewer").hidden = true; }
  if (entry.id !== null) await fetch(`/api/jobs/${entry.id}`, { method: "DELETE" }).catch(() => {});
}

// ---- uploading --------------------------------------------------------------------------------------------
function addFiles(files) {
  for (const file of files) {
    const entry = newEntry(file.name);
    if (file.size > config.max_upload_bytes) {
      fail(entry, `${file.name} is ${megabytes(file.size)} MB; this server accepts up to ` +
        `${megabytes(config.max_upload_bytes)} MB per photo`);
      continue;
    }
    const params = new URLSearchParams({ model: $("model").value, name: file.name });
    if (!$("task-label").hidden) params.set("task", $("task").value);
    uploads = uploads.then(() => upload(entry, file, params));
  }
}

async function upload(entry, file, params) {
  if (!entries.includes(entry)) return;  // removed before its turn
  setState(entry, "uploading", "uploading…");
  try {
    const response = await fetch(`/api/jobs?${params}`, {
      method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" },
    });
    const body = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
    if (!response.ok) { fail(entry, body.error || `the server answered ${response.status}`); return; }
    render(entry, body);
    poll();
  } catch (error) {
    fail(entry, `upload failed (${error.message}); is derain serve still running?`);
  }
}

// ---- following the queue ------------------------------------------------------------------------------
async function poll() {
  if (polling) return;
  polling = true;
  try {
    while (entries.some((e) => e.id !== null && (e.state === "queued" || e.state === "running"))) {
      try {
        // Only photos the server had accepted before this request can be missing from its answer: one whose
        // upload finishes while the list is on its way is simply not in it yet.
        const asked = new Set(entries.filter((e) => e.id !== null).map((e) => e.id));
        const response = await fetch("/api/jobs");
        const jobs = new Map((await response.json()).jobs.map((j) => [j.id, j]));
        for (const entry of entries) {
          if (!asked.has(entry.id) || entry.state === "done" || entry.state === "failed") continue;
          const job = jobs.get(entry.id);
          if (job) render(entry, job); else fail(entry, "the server no longer knows this photo (was it restarted?)");
        }
      } catch (error) {
        for (const entry of entries) {
          if (entry.state === "queued" || entry.state === "running") fail(entry, "lost contact with derain serve");
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 400));
    }
  } finally {
    polling = false;
  }
}

// ---- before/after viewer ------------------------------------------------------------------------------
function show(entry) {
  selected = entry;
  for (const e of entries) e.li.classList.toggle("selected", e === entry);
  $("viewer-title").textContent = `${entry.name} (${entry.width}×${entry.height})`;
  $("after").src = `/api/jobs/${entry.id}/result`;
  $("before").src = `/api/jobs/${entry.id}/input`;
  updateDownload();
  $("viewer").hidden = false;
  $("slider").value = 50;
  setDivider(50);
}

function updateDownload() {
  if (selected === null) return;
  const format = FORMATS[$("format").value] ? $("format").value : "png";
  const stem = selected.name.replace(/\.[^.]+$/, "");
  $("download").href = `/api/jobs/${selected.id}/result?download=1&format=${format}`;
  $("download").download = `${stem}-derained.${FORMATS[format].suffix}`;
  $("download").textContent = `Download ${FORMATS[format].label}`;
}

function setDivider(percent) {
  $("before").style.clipPath = `inset(0 ${100 - percent}% 0 0)`;
  $("divider").style.left = `${percent}%`;
}

function moveLoupe(event) {
  const loupe = $("loupe");
  const after = $("after");
  if (!$("loupe-toggle").checked || !after.naturalWidth) { loupe.hidden = true; return; }
  const box = $("compare").getBoundingClientRect();
  const x = event.clientX - box.left;
  const y = event.clientY - box.top;
  if (x < 0 || y < 0 || x > box.width || y > box.height) { loupe.hidden = true; return; }
  // Magnify the side under the pointer, in the photo's own pixels (zoom 4 = each pixel 4 screen pixels wide).
  const image = (x / box.width) * 100 < Number($("slider").value) ? $("before") : after;
  const zoom = Number($("zoom").value);
  const scale = after.naturalWidth / box.width;
  const size = loupe.offsetWidth || 200;
  loupe.hidden = false;
  loupe.style.left = `${x - size / 2}px`;
  loupe.style.top = `${y - size / 2}px`;
  loupe.style.backgroundImage = `url("${image.src}")`;
  loupe.style.backgroundSize = `${after.naturalWidth * zoom}px ${after.naturalHeight * zoom}px`;
  loupe.style.backgroundPosition = `${size / 2 - x * scale * zoom}px ${size / 2 - y * scale * zoom}px`;
}

// ---- wiring ---------------------------------------------------------------------------------------------
function wire() {
  $("files").addEventListener("change", (event) => { addFiles(event.target.files); event.target.value = ""; });
  const drop = $("drop");
  drop.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") $("files").click(); });
  // Photos dropped anywhere on the page are taken (and never opened by the browser in place of the page).
  window.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  window.addEventListener("dragleave", (event) => { if (!event.relatedTarget) drop.classList.remove("over"); });
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer && event.dataTransfer.files.length) addFiles(event.dataTransfer.files);
  });
  $("format").addEventListener("change", updateDownload);
  $("slider").addEventListener("input", (event) => setDivider(Number(event.target.value)));
  $("compare").addEventListener("mousemove", moveLoupe);
  $("compare").addEventListener("mouseleave", () => { $("loupe").hidden = true; });
}

wire();
loadConfig().catch((error) => {
  $("limits").textContent = `Cannot reach derain serve (${error.message}). Is it running?`;
});
