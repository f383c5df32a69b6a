// Copy and print buttons for the reference on the result page. Without JavaScript they never
// appear (the box stays hidden) and the reference is still plain text a client can select.
(function () {
  "use strict";
  var tools = document.querySelector("[data-reference-tools]");
  var reference = document.querySelector("[data-reference]");
  if (!tools || !reference) { return; }

  var status = document.createElement("span");
  status.className = "copy-status";
  status.setAttribute("role", "status");   // read out when the copy is done (or failed)

  function button(label) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "button";
    b.textContent = label;
    tools.appendChild(b);
    return b;
  }

  function selectReference() {
    var range = document.createRange();
    range.selectNodeContents(reference);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  var text = reference.textContent.trim();
  button(tools.getAttribute("data-copy-label")).addEventListener("click", function () {
    function done() { status.textContent = tools.getAttribute("data-copied-label"); }
    function failed() { selectReference(); status.textContent = tools.getAttribute("data-copy-failed-label"); }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, failed);
    } else {
      failed();
    }
  });
  button(tools.getAttribute("data-print-label")).addEventListener("click", function () { window.print(); });
  tools.appendChild(status);
  tools.hidden = false;
})();
