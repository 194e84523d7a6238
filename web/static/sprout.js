// Sprout dashboard: live parts by polling, the upload's progress bar. No framework.
(function () {
  "use strict";

  // Replaces the live part of a page every few seconds; stops if the session ended.
  function poll(el) {
    var url = el.getAttribute("data-poll");
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) {
          if (r.redirected || r.status === 401) { location.href = "/login?expired=1"; return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) { if (html !== null && html !== undefined) el.innerHTML = html; })
        .catch(function () {})
        .then(function () { busy = false; });
    }, 3000);
  }

  // Follows the instances' logs while the box is ticked.
  function logs(pre) {
    var url = pre.getAttribute("data-logs");
    var follow = document.getElementById("logs-follow");
    function load() {
      fetch(url, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : "(logs unavailable: " + r.status + ")"; })
        .then(function (text) {
          var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
          pre.textContent = text;
          if (atBottom || follow.checked) pre.scrollTop = pre.scrollHeight;
        })
        .catch(function () {});
    }
    load();
    setInterval(function () { if (follow && follow.checked && !document.hidden) load(); }, 3000);
  }

  // Uploads the archive with XMLHttpRequest so the page can show its progress.
  function upload(form) {
    var bar = document.getElementById("upload-progress");
    var status = document.getElementById("upload-status");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var file = form.querySelector("input[type=file]").files[0];
      var label = form.elements.label.value.trim();
      if (!file || !label) { status.textContent = "Choose an archive and give a label."; return; }
      var url = "/apps/" + encodeURIComponent(form.getAttribute("data-app")) + "/upload?label=" +
        encodeURIComponent(label) + "&description=" + encodeURIComponent(form.elements.description.value);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRF-Token", form.getAttribute("data-csrf"));
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      bar.hidden = false; bar.value = 0;
      status.className = ""; status.textContent = "Uploading…";
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) bar.value = Math.round(e.loaded * 100 / e.total);
      };
      xhr.onload = function () {
        if (xhr.status >= 200 && xhr.status < 300) {
          bar.value = 100;
          status.textContent = "Uploaded " + label + "; building…";
          setTimeout(function () { location.href = location.pathname + "?notice=" + encodeURIComponent("version " + label + " uploaded; building"); }, 600);
        } else {
          var detail = "upload failed (" + xhr.status + ")";
          try { detail = JSON.parse(xhr.responseText).detail || detail; } catch (e) { /* not JSON */ }
          status.className = "flash error";
          status.textContent = detail; // text, never HTML
        }
      };
      xhr.onerror = function () { status.className = "flash error"; status.textContent = "The upload did not reach the server."; };
      xhr.send(file);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
    document.querySelectorAll("[data-logs]").forEach(logs);
    var form = document.getElementById("upload");
    if (form) upload(form);
  });
})();
