// Progressive reveal of follow-up questions. Without JavaScript every question is shown and the
// server ignores answers to questions that were not asked; with it, a follow-up appears only when
// its condition (the same JSON the rules use: all / any / not / var + test) holds.
(function () {
  "use strict";
  var form = document.querySelector("form.questionnaire");
  if (!form) { return; }

  // The answer to a question, or null. An answer to a question that is not asked (its box's own
  // condition does not hold) counts as no answer, as on the server: a follow-up of a hidden
  // question hides too. `seen` holds the boxes being decided, so a loop of conditions ends.
  function valueOf(name, seen) {
    var inputs = form.querySelectorAll('[name="' + name + '"]');
    if (!inputs.length) { return null; }
    var box = inputs[0].closest("[data-asked-when]");
    if (box && (seen.indexOf(box) !== -1 || !asked(box, seen.concat([box])))) { return null; }
    var values = [];
    for (var i = 0; i < inputs.length; i++) {
      var el = inputs[i];
      if ((el.type === "radio" || el.type === "checkbox")) {
        if (el.checked) { values.push(el.value); }
      } else if (el.value) { values.push(el.value); }
    }
    if (!values.length) { return null; }
    return inputs[0].type === "checkbox" ? values : values[0];
  }

  function holds(c, seen) {
    if (c.all) { return c.all.every(function (x) { return holds(x, seen); }); }
    if (c.any) { return c.any.some(function (x) { return holds(x, seen); }); }
    if (c.not) { return !holds(c.not, seen); }
    var v = valueOf(c.var, seen);
    if (v === null) { return false; }
    if ("equals" in c) { return v === c.equals; }
    if ("not_equals" in c) { return v !== c.not_equals; }
    if ("in" in c) { return c.in.indexOf(v) !== -1; }
    if ("contains" in c) { return Array.isArray(v) && v.indexOf(c.contains) !== -1; }
    return true;  // a test this script does not know: show the question rather than hide it
  }

  function asked(box, seen) {
    try { return holds(JSON.parse(box.getAttribute("data-asked-when")), seen); } catch (e) { return true; }
  }

  var blocks = form.querySelectorAll("[data-asked-when]");
  // The button says what it will do: only check, or check and send.
  var button = form.querySelector("button[data-share-label]");
  var checkLabel = button ? button.textContent : "";
  function update() {
    if (button) { button.textContent = valueOf("share", []) === "yes" ? button.getAttribute("data-share-label") : checkLabel; }
    for (var i = 0; i < blocks.length; i++) {
      blocks[i].hidden = !asked(blocks[i], [blocks[i]]);
    }
  }
  form.addEventListener("change", update);
  update();

  // After a refused submission, move focus to the error summary so screen readers announce it.
  var summary = document.getElementById("error-summary");
  if (!summary) { return; }
  summary.focus();
  // A summary link leads to its question's box (an in-page link, which works without this script),
  // so the question and its message are at the top of the screen. The focus then goes to the
  // question's first answer without scrolling, as in GOV.UK's error summary, so that a keyboard or
  // screen reader user is at the question too (a radio that gets the focus is not chosen).
  summary.addEventListener("click", function (event) {
    var link = event.target.closest('a[href^="#"]');
    var box = link && document.getElementById(link.getAttribute("href").slice(1));
    var field = box && box.querySelector("input, textarea, select");
    if (!field) { return; }
    event.preventDefault();
    box.scrollIntoView({ block: "start" });
    field.focus({ preventScroll: true });
  });
})();
