// The page of `cocktail serve`: upload, poll the job, show each talker. No library, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
let info = { models: [], default: "", max_mb: 50, max_seconds: 600 };

function show(id, visible) { $(id).hidden = !visible; }

function setError(message) {
  $("error").textContent = message ? "error: " + message : "";
  show("error", Boolean(message));
}

function busy(on) {
  $("separate-go").disabled = on;
  $("extract-go").disabled = on;
}

// --- tabs -------------------------------------------------------------------------------
for (const tab of document.querySelectorAll('[role="tab"]')) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll('[role="tab"]')) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      show(other.dataset.panel, selected);
    }
  });
}

// --- choosing and dropping files -------------------------------------------------------------
function watchDrop(dropId, inputId, nameId) {
  const drop = $(dropId), input = $(inputId);
  const describe = () => {
    const file = input.files[0];
    $(nameId).textContent = file ? `${file.name} (${(file.size / 1e6).toFixed(2)} MB)` : "";
  };
  input.addEventListener("change", describe);
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) { input.files = event.dataTransfer.files; describe(); }
  });
}
watchDrop("separate-drop", "separate-file", "separate-name");
watchDrop("extract-drop", "extract-file", "extract-name");
watchDrop("enroll-drop", "enroll-file", "enroll-name");

// --- talking to the server ------------------------------------------------------------------
async function answer(response) {
  let body = {};
  try { body = await response.json(); } catch (_) { body = { error: `the server answered ${response.status}` }; }
  if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
  return body;
}

async function start(url, fields) {
  setError("");
  show("results", false);
  const form = new FormData();
  let total = 0;
  for (const [name, value] of Object.entries(fields)) {
    if (value instanceof File) total += value.size;
    form.append(name, value);
  }
  if (total > info.max_mb * 1e6) {
    setError(`the upload is ${(total / 1e6).toFixed(1)} MB; this server takes at most ${info.max_mb} MB a request`);
    return;
  }
  busy(true);
  $("progress").value = 0;
  $("stage").textContent = "uploading";
  show("status", true);
  try {
    const job = await answer(await fetch(url, { method: "POST", body: form }));
    await follow(job.id);
  } catch (err) {
    setError(err.message);
    show("status", false);
  } finally {
    busy(false);
  }
}

function follow(id) {
  return new Promise((resolve, reject) => {
    const tick = async () => {
      try {
        const job = await answer(await fetch(`/api/jobs/${id}`, { cache: "no-store" }));
        $("progress").value = job.progress;
        $("stage").textContent = job.state === "queued" && job.position > 0
          ? `waiting: ${job.position} job(s) ahead` : job.stage;
        if (job.state === "done") { show("status", false); render(job); resolve(); return; }
        if (job.state === "error") { reject(new Error(job.error)); return; }
        setTimeout(tick, 400);
      } catch (err) { reject(err); }
    };
    tick();
  });
}

// --- results -----------------------------------------------------------------------------------
function render(job) {
  const result = job.result, base = `/api/jobs/${job.id}/files/`;
  $("mixture-spectrogram").src = base + result.mixture.spectrogram;
  const outputs = $("outputs");
  outputs.replaceChildren();
  for (const output of result.outputs) {
    const card = document.createElement("figure");
    card.className = "output";
    const caption = document.createElement("figcaption");
    caption.textContent = output.label;
    const picture = document.createElement("img");
    picture.src = base + output.spectrogram;
    picture.alt = "spectrogram of " + output.label;
    const controls = document.createElement("div");
    controls.className = "controls";
    const player = document.createElement("audio");
    player.controls = true;
    player.preload = "metadata";
    player.src = base + output.audio;
    const download = document.createElement("a");
    download.className = "button download";
    download.href = base + output.audio + "?download=1";
    download.textContent = "Download";
    download.setAttribute("download", "");
    controls.append(player, download);
    card.append(caption, picture, controls);
    outputs.append(card);
  }
  const verdict = $("verdict");
  if (result.verification) {
    const v = result.verification;
    const decision = v.decision === null ? "no calibrated threshold, no decision"
      : v.decision === "present" ? "the enrolled talker speaks in this recording"
      : "the enrolled talker does not seem to speak in this recording";
    verdict.textContent = `Verification score ${v.score.toFixed(3)}` +
      (v.threshold === null ? "" : ` (threshold ${v.threshold.toFixed(3)})`) + `: ${decision}.`;
    verdict.dataset.decision = v.decision === null ? "" : v.decision;
  }
  show("verdict", Boolean(result.verification));
  show("results", true);
}

// --- forms ---------------------------------------------------------------------------------------
$("separate-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("separate-file").files[0];
  if (!file) { setError("choose a recording first"); return; }
  start("/api/separate", { mixture: file, model: $("separate-model").value });
});

$("extract-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("extract-file").files[0], enroll = $("enroll-file").files[0];
  if (!file || !enroll) { setError("choose both the recording and the enrollment first"); return; }
  start("/api/extract", { mixture: file, enrollment: enroll });
});

(async () => {
  try {
    info = await answer(await fetch("/api/info"));
  } catch (err) { setError(err.message); return; }
  const select = $("separate-model");
  for (const name of info.models) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name === info.default ? `${name} (default)` : name;
    select.append(option);
  }
  select.value = info.default;
  $("extract-model").textContent = `Separates with ${info.extract.model}, then keeps the output whose ` +
    `voice is closest to the enrollment's (embedder: ${info.extract.embedder})`;
  $("limits").textContent = `Recordings up to ${info.max_seconds / 60} minutes and ${info.max_mb} MB; ` +
    "any format libsndfile reads. Results are kept for a while on this machine only, then removed.";
})();
