// Evaluate page: the every-image table sorts by any column heading and filters (what went wrong, true class,
// file name); a number in a confusion matrix lists the images of that cell. No inline scripts (the CSP).
(function () {
  "use strict";

  var table = document.getElementById("image-table");
  var tools = document.getElementById("image-table-tools");
  if (!table || !tools) return;
  tools.hidden = false;  // without this script, the table is still there, unsorted and unfiltered
  var models = table.dataset.models.split(" ");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var filter = document.getElementById("image-filter");
  var cellOption = document.getElementById("image-filter-cell");
  var trueClass = document.getElementById("image-class");
  var search = document.getElementById("image-search");
  var status = document.getElementById("image-table-status");
  var empty = document.getElementById("image-table-empty");
  var cell = null;  // {model, true, said} while a confusion-matrix cell is shown

  function shortName(model) {
    var heading = table.querySelector('th[data-sort="said:' + model + '"] button');
    return heading ? heading.textContent.replace(/ says$/, "") : model;
  }

  function keep(row) {
    var d = row.dataset, kind = filter.value;
    var right = models.map(function (_, k) { return d["right-" + k] === "true"; });
    if (trueClass.value && d.true !== trueClass.value) return false;
    if (search.value && d.name.toLowerCase().indexOf(search.value.toLowerCase()) < 0) return false;
    if (kind === "any-wrong") return right.indexOf(false) >= 0;
    if (kind === "all-wrong") return right.indexOf(true) < 0;
    if (kind === "disagree") return d.agree === "false";
    if (kind === "uncertain") return d.uncertain === "true";
    if (kind === "out-of-scope") return d.outOfScope === "true";
    if (kind.indexOf("wrong:") === 0) return !right[models.indexOf(kind.slice(6))];
    if (kind === "cell" && cell) return d["said-" + models.indexOf(cell.model)] === cell.said;
    return true;
  }

  function apply() {
    var shown = 0;
    rows.forEach(function (row) {
      row.hidden = !keep(row);
      if (!row.hidden) shown += 1;
    });
    var what = filter.value === "cell" && cell ?
      ": true " + cell.true + ", " + shortName(cell.model) + " said " + cell.said : "";
    status.textContent = "Showing " + shown + " of " + rows.length + " image" + (rows.length === 1 ? "" : "s") + what + ".";
    empty.hidden = shown !== 0;
  }

  function reset() {
    cell = null;
    cellOption.hidden = cellOption.disabled = true;
    filter.value = "all";
    trueClass.value = "";
    search.value = "";
    apply();
  }

  filter.addEventListener("change", function () {
    if (filter.value !== "cell") { cell = null; cellOption.hidden = cellOption.disabled = true; }
    apply();
  });
  trueClass.addEventListener("change", apply);
  search.addEventListener("input", apply);
  document.getElementById("image-reset").addEventListener("click", reset);
  document.getElementById("image-empty-reset").addEventListener("click", reset);

  table.querySelectorAll("th[data-sort] button").forEach(function (button) {
    button.addEventListener("click", function () {
      var th = button.parentElement, key = th.dataset.sort;
      var order = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
      table.querySelectorAll("th[data-sort]").forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", order);
      function value(row) {
        var d = row.dataset;
        if (key === "index") return Number(d.index);
        if (key.indexOf("conf:") === 0) return Number(d["conf-" + models.indexOf(key.slice(5))]);
        if (key.indexOf("said:") === 0) return d["said-" + models.indexOf(key.slice(5))];
        return d[key].toLowerCase();
      }
      rows.sort(function (a, b) {
        var x = value(a), y = value(b);
        var c = x < y ? -1 : x > y ? 1 : Number(a.dataset.index) - Number(b.dataset.index);
        return order === "ascending" ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
      status.textContent = "Sorted by " + button.textContent + ", " + order + ".";
    });
  });

  document.querySelectorAll(".cell-link").forEach(function (link) {
    link.addEventListener("click", function () {
      cell = {model: link.dataset.model, true: link.dataset.true, said: link.dataset.said};
      cellOption.hidden = cellOption.disabled = false;
      filter.value = "cell";
      trueClass.value = cell.true;
      search.value = "";
      apply();
      var heading = document.getElementById("user-images-heading");
      heading.scrollIntoView({behavior: "instant", block: "start"});
      heading.focus({preventScroll: true});
    });
  });

  apply();
}());
