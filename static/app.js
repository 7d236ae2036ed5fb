// Compare page behaviour (no inline scripts: the CSP forbids them).
// - A file list the visitor controls: dropped and chosen files merge, duplicates are skipped, any file can be
//   removed, and what cannot be sent (over the size limit, beyond the image limit) is set aside with a notice
//   before sending, so one bad file never costs the batch.
// - Results: focus moves to them and the summary is announced; a reload never posts the images again;
//   a filter shows only disagreements, uncertain or out-of-scope images.
(function () {
  "use strict";

  document.querySelectorAll(".progress-bar[data-width]").forEach(function (bar) {
    bar.style.width = bar.dataset.width + "%";
  });

  var heading = document.getElementById("results-heading");
  if (heading) {
    heading.scrollIntoView({behavior: "instant", block: "start"});
    heading.focus({preventScroll: true});
    // The results came from a POST: make the page's address a plain GET, so reloading never sends the
    // images again (nothing is stored server-side to redirect to).
    if (window.history.replaceState) window.history.replaceState(null, "", window.location.pathname);
  }

  document.querySelectorAll("#result-tools [data-filter]").forEach(function (button) {
    button.addEventListener("click", function () {
      var filter = button.dataset.filter;
      document.querySelectorAll("#result-tools [data-filter]").forEach(function (other) {
        var on = other === button;
        other.classList.toggle("active", on);
        other.setAttribute("aria-pressed", on ? "true" : "false");
      });
      var shown = 0;
      document.querySelectorAll("#results article.result").forEach(function (card) {
        var show = filter === "all" || (filter === "disagree" && card.dataset.agree === "false") ||
          (filter === "uncertain" && card.dataset.uncertain === "true") ||
          (filter === "out-of-scope" && card.dataset.outOfScope === "true");
        card.hidden = !show;
        if (show) shown += 1;
      });
      var status = document.getElementById("filter-status");
      if (status) status.textContent = "Showing " + shown + " result" + (shown === 1 ? "" : "s") + ".";
      var empty = document.getElementById("filter-empty");
      if (empty) empty.hidden = shown !== 0;  // never a blank area where the results were
    });
  });

  var showAll = document.querySelector("#filter-empty [data-filter]");
  if (showAll) showAll.addEventListener("click", function () {
    document.querySelector('#result-tools [data-filter="all"]').click();
  });

  // Evaluate page: one class picker per chosen file (blank: the class comes from the file name).
  var evalFiles = document.getElementById("eval-files");
  var labelList = document.getElementById("label-list");
  var labelOptions = document.getElementById("label-options");
  if (evalFiles && labelList && labelOptions) {
    evalFiles.addEventListener("change", function () {
      labelList.replaceChildren();
      Array.prototype.forEach.call(evalFiles.files, function (file, i) {
        var item = document.createElement("li");
        item.className = "d-flex align-items-center gap-2 mb-1";
        var select = document.createElement("select");
        select.name = "labels";
        select.id = "label-" + i;
        select.className = "form-select form-select-sm w-auto";
        select.appendChild(labelOptions.content.cloneNode(true));
        var label = document.createElement("label");
        label.htmlFor = select.id;
        label.className = "small text-truncate";
        label.textContent = file.name;
        item.appendChild(select);
        item.appendChild(label);
        labelList.appendChild(item);
      });
    });
  }
  var evaluated = document.getElementById("evaluation-heading");
  if (evaluated) {
    evaluated.parentNode.scrollIntoView({behavior: "instant", block: "start"});
    evaluated.focus({preventScroll: true});
    if (window.history.replaceState) window.history.replaceState(null, "", window.location.pathname);
  }

  var form = document.getElementById("upload-form");
  var input = document.getElementById("files");
  var zone = document.getElementById("dropzone");
  var previews = document.getElementById("previews");
  var notice = document.getElementById("file-notice");
  if (!form || !input || !zone || !previews || !notice) return;
  var maxImages = parseInt(form.dataset.maxImages, 10);
  var maxBytes = parseInt(form.dataset.maxFileBytes, 10);
  var chosen = [];  // the files that will be sent, in order
  var truths = [];  // the true class picked for each of them ("" = not given), same order
  var trueOptions = document.getElementById("true-class-options");
  var pasted = 0;
  zone.hidden = false;  // the drop zone opens the same input: one picker on the page, not two
  var field = document.getElementById("file-field");
  if (field) field.hidden = true;

  function key(file) { return [file.name, file.size, file.lastModified].join("/"); }

  function megabytes(bytes) { return (bytes / 1024 / 1024).toFixed(1) + " MB"; }

  function urlCount() {
    return document.getElementById("urls").value.split("\n").filter(function (line) {
      return line.trim() !== "";
    }).length;
  }

  function sync() {
    var transfer = new DataTransfer();
    chosen.forEach(function (file) { transfer.items.add(file); });
    input.files = transfer.files;
  }

  function render() {
    previews.replaceChildren();
    chosen.forEach(function (file, i) {
      var item = document.createElement("li");
      item.className = "preview";
      if (file.type.indexOf("image/") === 0) {
        var img = document.createElement("img");
        img.alt = "";
        img.src = URL.createObjectURL(file);
        img.onload = function () { URL.revokeObjectURL(img.src); };
        item.appendChild(img);
      } else {
        var box = document.createElement("div");
        box.className = "not-image";
        box.textContent = "not an image?";
        item.appendChild(box);
      }
      var caption = document.createElement("div");
      caption.className = "small text-truncate";
      caption.textContent = file.name;
      caption.title = file.name;
      item.appendChild(caption);
      if (trueOptions) {
        var truth = document.createElement("select");
        truth.name = "true_labels";
        truth.className = "form-select form-select-sm true-class";
        truth.setAttribute("aria-label", "True class of " + file.name + " (optional)");
        truth.appendChild(trueOptions.content.cloneNode(true));
        truth.value = truths[i] || "";
        truth.addEventListener("change", function () { truths[i] = truth.value; });
        item.appendChild(truth);
      }
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "btn btn-sm btn-light border remove";
      remove.textContent = "×";
      remove.setAttribute("aria-label", "Remove " + file.name);
      remove.addEventListener("click", function () {
        chosen.splice(i, 1);
        truths.splice(i, 1);
        sync();
        render();
        say(file.name + " removed; " + chosen.length + " file" + (chosen.length === 1 ? "" : "s") + " chosen.");
        (previews.querySelector(".remove") || zone).focus();
      });
      item.appendChild(remove);
      previews.appendChild(item);
    });
  }

  function say(message) {
    notice.hidden = !message;
    notice.textContent = message || "";
  }

  function addFiles(files) {
    var known = {};
    chosen.forEach(function (f) { known[key(f)] = true; });
    var tooLarge = [], duplicates = 0, overLimit = [];
    Array.prototype.forEach.call(files, function (file) {
      if (known[key(file)]) { duplicates += 1; return; }
      if (file.size > maxBytes) { tooLarge.push(file.name + " (" + megabytes(file.size) + ")"); return; }
      if (chosen.length + urlCount() >= maxImages) { overLimit.push(file.name); return; }
      known[key(file)] = true;
      chosen.push(file);
      truths.push("");
    });
    sync();
    render();
    var parts = [];
    if (tooLarge.length) {
      parts.push("Not added, larger than " + megabytes(maxBytes) + ": " + tooLarge.join(", ") + ".");
    }
    if (overLimit.length) {
      parts.push("Kept the first " + maxImages + " images (the limit per comparison); not added: " +
        overLimit.length + " file" + (overLimit.length === 1 ? "" : "s") + ". Compare these, then the rest.");
    }
    if (duplicates) parts.push(duplicates + " file" + (duplicates === 1 ? " was" : "s were") + " already chosen.");
    say(parts.join(" "));
  }

  // The browser replaces input.files on every choice; take the new files into the list instead.
  input.addEventListener("change", function () {
    var picked = Array.prototype.slice.call(input.files);
    sync();  // restore the list first: the new choice adds to it
    addFiles(picked);
  });
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
  // A photo from the camera (phones open it; other browsers a file picker) and images pasted from the clipboard
  // join the same list as chosen and dropped files.
  var tools = document.getElementById("capture-tools");
  var camera = document.getElementById("camera");
  if (tools && camera) {
    tools.hidden = false;
    document.getElementById("take-photo").addEventListener("click", function () { camera.click(); });
    camera.addEventListener("change", function () {
      addFiles(camera.files);
      camera.value = "";
    });
  }
  document.addEventListener("paste", function (e) {
    var items = e.clipboardData ? Array.prototype.slice.call(e.clipboardData.files || []) : [];
    var images = items.filter(function (file) { return file.type.indexOf("image/") === 0; });
    if (!images.length) return;  // text pasted into the URL box stays text
    e.preventDefault();
    addFiles(images.map(function (file) {
      pasted += 1;
      var extension = (file.type.split("/")[1] || "png").replace("jpeg", "jpg");
      return new File([file], "pasted-image-" + pasted + "." + extension, {type: file.type,
                                                                         lastModified: Date.now() + pasted});
    }));
  });
  form.addEventListener("submit", function (e) {
    if (chosen.length + urlCount() > maxImages) {
      e.preventDefault();
      say((chosen.length + urlCount()) + " images (files and URLs); the limit is " + maxImages +
        " per comparison. Remove some files or URLs.");
      notice.focus();
      return;
    }
    var button = document.getElementById("submit");
    if (button) { button.disabled = true; button.textContent = "Comparing…"; }
  });
})();

// Explanation maps: each card's "Why?" is a <details> (works without this script); this adds one button that
// opens or closes them all, and keeps its label in step when cards are opened one by one.
(function () {
  "use strict";
  var all = document.getElementById("why-all");
  var panels = Array.prototype.slice.call(document.querySelectorAll("details.why"));
  if (!all || !panels.length) return;
  all.hidden = false;
  function label() {
    all.textContent = panels.every(function (p) { return p.open; }) ? "Hide all maps" : "Show all maps";
  }
  label();  // after "Why? Explain these results" every map is open already
  all.addEventListener("click", function () {
    var open = !panels.every(function (p) { return p.open; });
    panels.forEach(function (p) { p.open = open; });
    label();
  });
  panels.forEach(function (p) { p.addEventListener("toggle", label); });
})();

// "Why? Explain these results" takes seconds (the maps of every image): say so while the page waits.
(function () {
  "use strict";
  var form = document.getElementById("explain-form");
  var button = document.getElementById("explain-results");
  if (!form || !button) return;
  form.addEventListener("submit", function () {
    button.disabled = true;
    button.textContent = button.getAttribute("data-busy");
  });
})();
