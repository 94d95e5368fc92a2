/* Lookout console behaviour: toasts, dialogs, symbol fields, the selected run row and the
   equity/drawdown charts. Plain JS on top of htmx; no build step. */
(function () {
  "use strict";

  /* --- toasts: Django messages on page load, `toast` events from HX-Trigger ------------------ */
  function toast(level, message) {
    var box = document.getElementById("toasts");
    if (!box || !message) return;
    var item = document.createElement("div");
    item.className = "toast toast-" + (level || "info");
    item.setAttribute("role", level === "error" ? "alert" : "status");
    var text = document.createElement("span");
    text.textContent = message;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    item.append(text, close);
    box.append(item);
    scheduleDismiss(item, level);
  }

  function scheduleDismiss(item, level) {
    setTimeout(function () { item.remove(); }, level === "error" ? 12000 : 6000);
  }

  document.addEventListener("toast", function (event) {
    toast(event.detail.level, event.detail.message);
  });
  document.addEventListener("click", function (event) {
    var close = event.target.closest(".toast-close");
    if (close) close.closest(".toast").remove();
  });
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    // Refusals from our views carry their own toast in HX-Trigger.
    if (xhr.getResponseHeader("HX-Trigger")) return;
    toast("error", "The server answered " + xhr.status + (xhr.status >= 500 ? ": something went wrong, try again." : "."));
  });
  document.addEventListener("htmx:sendError", function () {
    toast("error", "The server cannot be reached: check your connection.");
  });

  /* --- dialogs ------------------------------------------------------------------------------- */
  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-open-dialog]");
    if (opener && !opener.disabled) {
      var dialog = document.getElementById(opener.dataset.openDialog);
      if (dialog) dialog.showModal();
      return;
    }
    var closer = event.target.closest("[data-close-dialog]");
    if (closer) {
      var open = closer.closest("dialog");
      if (open) open.close();
    }
  });

  function showDialogs(root) {
    var dialogs = root.matches && root.matches("dialog[data-show-modal]") ? [root] : [];
    dialogs = dialogs.concat(Array.from(root.querySelectorAll ? root.querySelectorAll("dialog[data-show-modal]") : []));
    dialogs.forEach(function (dialog) {
      if (dialog.open) return;
      dialog.showModal();
      dialog.addEventListener("close", function () {
        dialog.remove();
        if (location.pathname.replace(/\/$/, "").endsWith("/runs/new")) history.replaceState(null, "", "/runs/");
      });
    });
  }

  document.addEventListener("dialog-close", function () {
    var dialog = document.getElementById("new-run-dialog");
    if (dialog) dialog.close();
  });

  /* A poll (hx-trigger "every …") does not replace a part of the page holding a dialog the
     operator has open (Kill, Reset): the swap would close it under their cursor. The first poll
     after it closes brings that part up to date. */
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    var trigger = elt && elt.getAttribute ? elt.getAttribute("hx-trigger") || "" : "";
    if (!/(^|[\s,])every\s/.test(trigger)) return;
    var target = event.detail.target || elt;
    if (elt.querySelector("dialog[open]") || (target.querySelector && target.querySelector("dialog[open]"))) {
      event.preventDefault();
    }
  });

  /* --- symbol fields: corrections, search popover, mismatch summary ---------------------------- */
  document.addEventListener("click", function (event) {
    var pick = event.target.closest("[data-pick-symbol]");
    if (pick) {
      var input = document.getElementById(pick.dataset.input);
      if (input) {
        input.value = pick.dataset.pickSymbol;
        closePopovers();
        input.focus();
        htmx.trigger(input, "symbol-picked");
      }
      return;
    }
    var toggle = event.target.closest("[data-search-toggle]");
    if (toggle) {
      var popover = document.getElementById(toggle.dataset.searchToggle + "-search");
      var opening = popover.hidden;
      closePopovers();
      if (opening) {
        popover.hidden = false;
        toggle.setAttribute("aria-expanded", "true");
        var search = popover.querySelector("input[type=search]");
        if (search) search.focus();
      }
      return;
    }
    if (!event.target.closest(".popover")) closePopovers();
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") closePopovers();
  });

  function closePopovers() {
    document.querySelectorAll(".popover:not([hidden])").forEach(function (popover) {
      popover.hidden = true;
      var toggle = document.querySelector('[data-search-toggle="' + popover.id.replace(/-search$/, "") + '"]');
      if (toggle) toggle.setAttribute("aria-expanded", "false");
    });
  }

  function updateMismatchSummary(form) {
    var summary = form.querySelector(".mismatch-summary");
    if (!summary) return;
    var list = summary.querySelector("ul");
    list.replaceChildren();
    var count = 0;
    form.querySelectorAll(".field-symbol").forEach(function (field) {
      var check = field.querySelector(".symbol-check");
      // Only strategy parameters declare an asset type the operator could change instead.
      if (!field.dataset.editorUrl || !check || check.dataset.status !== "other_asset_type") return;
      count += 1;
      var item = document.createElement("li");
      var label = document.createElement("span");
      label.className = "mismatch-label";
      label.textContent = field.dataset.label;
      var link = document.createElement("a");
      link.href = field.dataset.editorUrl;
      link.textContent = "Edit parameter in the strategy editor";
      var symbol = document.createElement("span");
      symbol.className = "mono";
      symbol.textContent = check.dataset.symbol;
      item.append(label, " ", symbol, ": " + check.dataset.message + " ", link);
      list.append(item);
    });
    summary.hidden = count === 0;
    form.querySelectorAll("[data-blocked-by-mismatch]").forEach(function (button) {
      button.disabled = count > 0;
    });
  }

  document.addEventListener("submit", function (event) {
    // The summary is the source of truth for the block: never post while it lists a mismatch.
    var summary = event.target.querySelector && event.target.querySelector(".mismatch-summary");
    if (summary && !summary.hidden) event.preventDefault();
  }, true);

  /* --- the selected run in the list ---------------------------------------------------------- */
  function markSelectedRun() {
    var match = location.pathname.match(/\/runs\/(\d+)\//);
    var selected = match ? match[1] : null;
    document.querySelectorAll("#run-rows tr[data-run-id]").forEach(function (row) {
      if (row.dataset.runId === selected) row.setAttribute("aria-selected", "true");
      else row.removeAttribute("aria-selected");
    });
  }
  window.addEventListener("popstate", markSelectedRun);
  document.addEventListener("htmx:pushedIntoHistory", markSelectedRun);

  /* --- charts: equity and drawdown (uPlot), updated in place on refresh ----------------------- */
  var UTC = function (seconds) { return uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"); };
  var money = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  var money2 = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });

  function chartOptions(kind, element) {
    var width = Math.max(element.clientWidth, 300);
    var sync = { key: element.dataset.source, setSeries: false };
    if (kind === "drawdown") {
      return {
        width: width, height: 120, tzDate: UTC, cursor: { sync: sync },
        legend: { show: true },
        scales: { x: { time: true }, y: { range: function (u, min) { return [Math.min(min, -0.01), 0]; } } },
        axes: [
          { stroke: "#5b6470", grid: { stroke: "#eef0f3" } },
          { stroke: "#5b6470", size: 64, grid: { stroke: "#eef0f3" },
            values: function (u, ticks) { return ticks.map(function (v) { return (v * 100).toFixed(0) + " %"; }); } },
        ],
        series: [{}, {
          label: "Drawdown", stroke: "#c0392b", width: 1, fill: "rgba(192,57,43,0.15)",
          value: function (u, v) { return v == null ? "–" : (v * 100).toFixed(2) + " %"; },
        }],
      };
    }
    return {
      width: width, height: 240, tzDate: UTC, cursor: { sync: sync },
      legend: { show: true },
      scales: { x: { time: true } },
      axes: [
        { stroke: "#5b6470", grid: { stroke: "#eef0f3" } },
        { stroke: "#5b6470", size: 64, grid: { stroke: "#eef0f3" },
          values: function (u, ticks) { return ticks.map(function (v) { return money.format(v); }); } },
      ],
      series: [{}, {
        label: "Portfolio value", stroke: "#1f5fbf", width: 1.5, fill: "rgba(31,95,191,0.07)",
        value: function (u, v) { return v == null ? "–" : money2.format(v); },
      }],
    };
  }

  function drawCharts() {
    if (typeof uPlot === "undefined") return;
    document.querySelectorAll("[data-chart]").forEach(function (element) {
      var source = document.getElementById(element.dataset.source);
      if (!source) return;
      var data = JSON.parse(source.textContent);
      var series = data[element.dataset.chart];
      if (!series || !series[0].length) return;
      if (element._uplot) {
        element._uplot.setData(series);
      } else {
        element._uplot = new uPlot(chartOptions(element.dataset.chart, element), series, element);
      }
      element.dataset.drawn = String(series[0].length);
    });
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      document.querySelectorAll("[data-chart]").forEach(function (element) {
        if (element._uplot) element._uplot.setSize({ width: Math.max(element.clientWidth, 300), height: element._uplot.height });
      });
    }, 150);
  });

  /* --- the strategy log reads newest last: open it at the bottom ------------------------------ */
  document.addEventListener("toggle", function (event) {
    if (event.target.matches && event.target.matches("details.log") && event.target.open) scrollLogToEnd(event.target);
  }, true);

  function scrollLogToEnd(root) {
    var lines = root.querySelector(".log-lines");
    if (lines) lines.scrollTop = lines.scrollHeight;
  }

  /* --- wiring ---------------------------------------------------------------------------------- */
  // Runs for the page on htmx's start-up and for every swapped-in fragment afterwards.
  htmx.onLoad(function (root) {
    showDialogs(root);
    if (root.querySelector) {
      var openLog = root.matches("details.log[open]") ? root : root.querySelector("details.log[open]");
      if (openLog) scrollLogToEnd(openLog);
    }
    if (root.matches && root.matches("form")) updateMismatchSummary(root);
    if (root.querySelectorAll) root.querySelectorAll("form").forEach(updateMismatchSummary);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    // A history restore settles without a target element.
    var target = event.detail && (event.detail.target || event.detail.elt);
    var form = target && target.closest ? target.closest("form") : null;
    if (form) updateMismatchSummary(form);
    drawCharts();
    markSelectedRun();
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("#toasts .toast").forEach(function (item) {
      scheduleDismiss(item, item.classList.contains("toast-error") ? "error" : "info");
    });
    drawCharts();
    markSelectedRun();
  });
})();
