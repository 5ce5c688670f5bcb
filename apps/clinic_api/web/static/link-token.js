// Emailed links carry their one-time code after "#": a browser never sends that part to a server, so it stays out of
// every access log and Referer header. This moves it into the page's form and drops it from the address bar and the
// history. (The only script the account pages need; no inline script: the CSP forbids it.)
document.addEventListener("DOMContentLoaded", function () {
  var input = document.querySelector("input[data-link-token]");
  var match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (input && match) {
    input.value = decodeURIComponent(match[1]);
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
});
