// The gateway's page: send a URL or a file to /predict and draw the answer.
"use strict";

const $ = (id) => document.getElementById(id);

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function busy(on) {
  $("url-submit").disabled = on;
  document.body.classList.toggle("busy", on);
}

function render(answer, photoSrc) {
  $("photo").src = photoSrc;
  $("top-label").textContent = answer.label;
  const bars = $("bars");
  bars.replaceChildren();
  for (const [name, probability] of Object.entries(answer.predictions)) {
    const item = document.createElement("li");
    item.dataset.label = name;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(probability * 100).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(probability * 100).toFixed(1)}%`;
    item.append(label, bar, value);
    bars.append(item);
  }
  const t = answer.timing_ms;
  $("meta").textContent =
    `${answer.model.name} v${answer.model.version} · ${t.total.toFixed(0)} ms total ` +
    `(fetch ${t.fetch.toFixed(0)}, preprocess ${t.preprocess.toFixed(0)}, ` +
    `inference ${t.inference.toFixed(0)})`;
  $("result").hidden = false;
}

async function classify(request, photoSrc) {
  clearError();
  busy(true);
  try {
    const response = await fetch("/predict", { method: "POST", ...request });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
      showError(`Could not classify: ${message}`);
      $("result").hidden = true;
      return;
    }
    render(body, photoSrc);
  } catch (error) {
    showError(`The gateway did not answer: ${error.message}`);
  } finally {
    busy(false);
  }
}

function classifyFile(file) {
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  classify({ body: form }, URL.createObjectURL(file));
}

$("url-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const url = $("url-input").value.trim();
  if (!url) return;
  classify(
    { headers: { "Content-Type": "application/json" }, body: JSON.stringify({ url }) },
    url,
  );
});

$("file-input").addEventListener("change", (event) => classifyFile(event.target.files[0]));

const zone = $("drop-zone");
for (const name of ["dragenter", "dragover"]) {
  zone.addEventListener(name, (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
}
for (const name of ["dragleave", "drop"]) {
  zone.addEventListener(name, () => zone.classList.remove("over"));
}
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  classifyFile(event.dataTransfer.files[0]);
});
zone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") $("file-input").click();
});

async function checkModel() {
  try {
    const response = await fetch("/readyz");
    const body = await response.json();
    $("model-status").textContent = response.ok
      ? `Model ${body.model.name} v${body.model.version} is ready`
      : "The model server is not ready yet";
  } catch {
    $("model-status").textContent = "The gateway is not answering";
  }
}

checkModel();
