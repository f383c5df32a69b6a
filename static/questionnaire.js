// Progressive reveal of follow-up questions. Without JavaScript every question is shown and the
// server ignores answers to questions that were not asked; with it, a follow-up appears only when
// its condition (the same JSON the rules use: all / any / not / var + test) holds.
(function () {
  "use strict";
  var form = document.querySelector("form.questionnaire");
  if (!form) { return; }

  function valueOf(name) {
    var inputs = form.querySelectorAll('[name="' + name + '"]');
    var values = [];
    for (var i = 0; i < inputs.length; i++) {
      var el = inputs[i];
      if ((el.type === "radio" || el.type === "checkbox")) {
        if (el.checked) { values.push(el.value); }
      } else if (el.value) { values.push(el.value); }
    }
    if (!values.length) { return null; }
    var multi = inputs.length && inputs[0].type === "checkbox";
    return multi ? values : values[0];
  }

  function holds(c) {
    if (c.all) { return c.all.every(holds); }
    if (c.any) { return c.any.some(holds); }
    if (c.not) { return !holds(c.not); }
    var v = valueOf(c.var);
    if (v === null) { return false; }
    if ("equals" in c) { return v === c.equals; }
    if ("not_equals" in c) { return v !== c.not_equals; }
    if ("in" in c) { return c.in.indexOf(v) !== -1; }
    if ("contains" in c) { return Array.isArray(v) && v.indexOf(c.contains) !== -1; }
    return true;  // a test this script does not know: show the question rather than hide it
  }

  var blocks = form.querySelectorAll("[data-asked-when]");
  // The button says what it will do: only check, or check and send.
  var button = form.querySelector("button[data-share-label]");
  var checkLabel = button ? button.textContent : "";
  function update() {
    if (button) { button.textContent = valueOf("share") === "yes" ? button.getAttribute("data-share-label") : checkLabel; }
    for (var i = 0; i < blocks.length; i++) {
      var show;
      try { show = holds(JSON.parse(blocks[i].getAttribute("data-asked-when"))); } catch (e) { show = true; }
      blocks[i].hidden = !show;
    }
  }
  form.addEventListener("change", update);
  update();

  // After a refused submission, move focus to the error summary so screen readers announce it.
  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }
})();
