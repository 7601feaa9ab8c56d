// The copy button next to a newly shown token value.
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("copy-token");
  if (!button) return;
  var field = document.getElementById(button.dataset.copy);
  var status = document.getElementById("copy-status");
  button.addEventListener("click", function () {
    var done = function () { status.textContent = "Copied to the clipboard."; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () {
        field.select();
        status.textContent = "Press Ctrl+C (Cmd+C) to copy the selected value.";
      });
    } else {
      field.select();
      document.execCommand("copy");
      done();
    }
  });
});
