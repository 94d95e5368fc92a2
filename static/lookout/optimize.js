/* Optimize: the Create Study dialog's Range… popover and value switches. The trial count and
   every check are the server's; this only fills inputs. */
(function () {
  "use strict";

  function refresh(input) {
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }

  document.addEventListener("click", function (event) {
    var apply = event.target.closest("[data-range-apply]");
    if (!apply) return;
    var body = apply.closest(".range-body");
    var part = function (name) { return body.querySelector('[data-range="' + name + '"]').value.trim(); };
    var input = document.getElementById(apply.dataset.rangeApply);
    // The server expands start:stop:step in Decimal, so 0.1 steps do not drift.
    input.value = part("start") + ":" + part("stop") + ":" + part("step");
    var vary = document.getElementById(input.dataset.vary);
    if (vary) vary.checked = true;
    apply.closest("details").open = false;
    refresh(input);
  });

  /* Typing values or ticking a choice switches its row on. */
  document.addEventListener("input", function (event) {
    var field = event.target.closest("[data-vary]");
    if (!field) return;
    var vary = document.getElementById(field.dataset.vary);
    if (vary && !vary.disabled && (field.type !== "checkbox" || field.checked) && (field.type === "checkbox" || field.value.trim())) vary.checked = true;
  });

  /* Closing the dialog opened at /optimize/new leaves the list's own address. */
  document.addEventListener("close", function (event) {
    if (event.target.id === "new-study-dialog" && location.pathname.replace(/\/$/, "").endsWith("/optimize/new")) {
      history.replaceState(null, "", "/optimize/");
    }
  }, true);
})();
