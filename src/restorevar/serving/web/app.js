// RestoreVAR page: upload → POST /api/jobs → poll GET /api/jobs/{id} → show and download the result.
"use strict";

const state = { task: "restore", limitBytes: 25 * 2 ** 20 };
const $ = (selector, root = document) => root.querySelector(selector);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function loadHealth() {
  try {
    const health = await (await fetch("/api/health")).json();
    state.limitBytes = health.max_upload_mb * 2 ** 20;
    $("#limit-mb").textContent = health.max_upload_mb;
    $("#model-info").textContent =
      `model ${health.model} · native ${health.image_size}×${health.image_size} · ${health.device}` +
      ` · ${health.concurrency} at a time, ${health.queue.capacity} may wait`;
    $("#tab-analysis").hidden = !health.analysis;
  } catch (err) {
    $("#model-info").textContent = `server not reachable (${err.message}); is restorevar serve running?`;
  }
}

function selectTab(task) {
  state.task = task;
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.task === task));
  }
  $("#analysis-help").hidden = task !== "analysis";
  $("#fast-option").hidden = task !== "restore";
}

function makeCard(file, task) {
  const card = $("#job-template").content.firstElementChild.cloneNode(true);
  $(".name", card).textContent = file.name;
  $("#jobs").prepend(card);
  const ui = {
    card,
    status(text) { $(".status", card).textContent = text; },
    progress(done, total) {
      const bar = $("progress", card);
      if (total > 0) { bar.max = total; bar.value = done; } else { bar.removeAttribute("value"); }
    },
    fail(message) {
      card.classList.add("failed");
      $("progress", card).hidden = true;
      ui.status(message);
    },
  };
  if (task === "restore") {
    const before = $(".before", card);
    before.src = URL.createObjectURL(file);
    before.onerror = () => { before.dataset.broken = "1"; };  // e.g. TIFF: the server's preview is used
    $(".slider", card).addEventListener("input", (event) => setSplit(card, event.target.value));
    setSplit(card, 50);
  }
  return ui;
}

function setSplit(card, percent) {
  $(".after", card).style.clipPath = `inset(0 0 0 ${percent}%)`;
  $(".divider", card).style.left = `${percent}%`;
}

async function upload(file, task) {
  const ui = makeCard(file, task);
  if (file.size > state.limitBytes) {
    return ui.fail(`${(file.size / 2 ** 20).toFixed(1)} MB is above the server's ${state.limitBytes / 2 ** 20} MB limit`);
  }
  const fast = task === "restore" && $("#fast").checked ? 1 : 0;
  let response;
  for (;;) {
    try {
      response = await fetch(`/api/jobs?task=${task}&resize=${fast}`, {
        method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" },
      });
    } catch (err) {
      return ui.fail(`upload failed: ${err.message}`);
    }
    if (response.status !== 503) break;
    const wait = Number(response.headers.get("Retry-After")) || 2;
    ui.status(`server busy, retrying in ${wait} s`);
    await sleep(wait * 1000);
  }
  const job = await response.json();
  if (!response.ok) return ui.fail(job.error || `HTTP ${response.status}`);
  await follow(job.id, file, ui);
}

async function follow(id, file, ui) {
  for (;;) {
    const response = await fetch(`/api/jobs/${id}`);
    const job = await response.json();
    if (!response.ok) return ui.fail(job.error || `HTTP ${response.status}`);
    if (job.status === "queued") ui.status("waiting in the queue…");
    if (job.status === "running") {
      ui.status(job.tiles_total ? `restoring: tile ${job.tiles_done} of ${job.tiles_total}` : "working…");
      ui.progress(job.tiles_done, job.tiles_total);
    }
    if (job.status === "failed") return ui.fail(job.error);
    if (job.status === "done") return show(job, file, ui);
    await sleep(400);
  }
}

function show(job, file, ui) {
  const card = ui.card;
  const stem = file.name.replace(/\.[^.]*$/, "") || "photo";
  const suffix = job.task === "analysis" ? "_analysis" : "_restored";
  $("progress", card).hidden = true;
  ui.status(job.task === "analysis" ? "analysis ready" : "restored");
  $(".time", card).textContent =
    `${job.width}×${job.height} · ${job.seconds.toFixed(1)} s` + (job.tiles_total > 1 ? ` · ${job.tiles_total} tiles` : "");
  if (job.task === "analysis") {
    $(".grid", card).src = job.result;
    $(".grid", card).hidden = false;
  } else {
    const before = $(".before", card);
    if (before.dataset.broken) before.src = job.input;
    $(".after", card).src = job.result;
    $(".compare", card).hidden = false;
  }
  const link = $(".download", card);
  link.href = job.result;
  link.download = `${stem}${suffix}.png`;
  if (job.task === "analysis") link.textContent = "Download analysis grid";
  link.hidden = false;
  if (job.warnings.length) ui.status(`${$(".status", card).textContent} · ${job.warnings.join("; ")}`);
}

function addFiles(files) {
  for (const file of files) upload(file, state.task);
}

function setup() {
  const drop = $("#drop");
  $("#files").addEventListener("change", (event) => { addFiles(event.target.files); event.target.value = ""; });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => { event.preventDefault(); addFiles(event.dataTransfer.files); });
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => selectTab(tab.dataset.task));
  }
  loadHealth();
}

setup();
