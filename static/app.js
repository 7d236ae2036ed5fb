// Upload page behaviour (no inline scripts: the CSP forbids them).
// - The drop zone puts dropped files into the real <input type="file">, so the form submits them.
// - Previews of the chosen files are shown before sending (object URLs, nothing leaves the browser).
// - Probability bars get their widths from data attributes.
(function () {
  "use strict";

  document.querySelectorAll(".progress-bar[data-width]").forEach(function (bar) {
    bar.style.width = bar.dataset.width + "%";
  });

  var results = document.getElementById("results-heading");
  if (results) {
    results.scrollIntoView({behavior: "instant", block: "start"});
    // The results came from a POST: make the page's address a plain GET, so reloading never sends the
    // images again (nothing is stored server-side to redirect to).
    if (window.history.replaceState) window.history.replaceState(null, "", window.location.pathname);
  }

  // Show all results, only the disagreements, or only the uncertain ones.
  document.querySelectorAll("#result-tools [data-filter]").forEach(function (button) {
    button.addEventListener("click", function () {
      var filter = button.dataset.filter;
      document.querySelectorAll("#result-tools [data-filter]").forEach(function (other) {
        var on = other === button;
        other.classList.toggle("active", on);
        other.setAttribute("aria-pressed", on ? "true" : "false");
      });
      document.querySelectorAll("#results article.result").forEach(function (card) {
        var shown = filter === "all" || (filter === "disagree" && card.dataset.agree === "false") ||
          (filter === "uncertain" && card.dataset.uncertain === "true");
        card.hidden = !shown;
      });
    });
  });

  var form = document.getElementById("upload-form");
  var input = document.getElementById("files");
  var zone = document.getElementById("dropzone");
  var previews = document.getElementById("previews");
  if (!form || !input || !zone || !previews) return;
  var maxImages = parseInt(form.dataset.maxImages, 10);
  var maxBytes = parseInt(form.dataset.maxFileBytes, 10);

  function showPreviews() {
    previews.replaceChildren();
    Array.prototype.forEach.call(input.files, function (file) {
      var figure = document.createElement("figure");
      figure.className = "preview mb-0";
      var caption = document.createElement("figcaption");
      caption.className = "small text-truncate";
      caption.textContent = file.name;
      if (file.type.indexOf("image/") === 0) {
        var img = document.createElement("img");
        img.alt = "preview of " + file.name;
        img.src = URL.createObjectURL(file);
        img.onload = function () { URL.revokeObjectURL(img.src); };
        figure.appendChild(img);
      } else {
        var box = document.createElement("div");
        box.className = "not-image";
        box.textContent = "not an image?";
        figure.appendChild(box);
      }
      if (file.size > maxBytes) caption.textContent += " (too large)";
      figure.appendChild(caption);
      previews.appendChild(figure);
    });
    if (input.files.length > maxImages) {
      var warning = document.createElement("div");
      warning.className = "alert alert-warning w-100 mb-0";
      warning.textContent = input.files.length + " files chosen; the limit is " + maxImages + " per request.";
      previews.appendChild(warning);
    }
  }

  function addFiles(files) {
    var merged = new DataTransfer();
    Array.prototype.forEach.call(input.files, function (f) { merged.items.add(f); });
    Array.prototype.forEach.call(files, function (f) { merged.items.add(f); });
    input.files = merged.files;
    showPreviews();
  }

  input.addEventListener("change", showPreviews);
  zone.addEventListener("click", function () { input.click(); });
  zone.addEventListener("keydown", function (e) {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.add("dragging"); });
  });
  ["dragleave", "dragend"].forEach(function (type) {
    zone.addEventListener(type, function () { zone.classList.remove("dragging"); });
  });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    zone.classList.remove("dragging");
    if (e.dataTransfer && e.dataTransfer.files.length) addFiles(e.dataTransfer.files);
  });
  form.addEventListener("submit", function () {
    var button = document.getElementById("submit");
    if (button) { button.disabled = true; button.textContent = "Classifying…"; }
  });
})();
