// Taskdeck: small enhancements on top of pages that work without JavaScript.
// - dates in the browser's time zone (the server renders UTC until it knows the zone from the `tz` cookie)
// - inline task status change without a reload (PATCH to the JSON API with the session's CSRF token)
// - export/report progress updated in place (polling the job's JSON resource)
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var live = null;

  function announce(text) {
    live = live || document.getElementById("live");
    if (live) { live.textContent = text; }
  }

  function zone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (e) { return "UTC"; }
  }

  function setupTimeZone() {
    var tz = zone();
    var current = (document.cookie.match(/(?:^|; )tz=([^;]*)/) || [])[1];
    if (decodeURIComponent(current || "") !== tz) {
      document.cookie = "tz=" + encodeURIComponent(tz) + "; path=/; max-age=31536000; samesite=lax";
    }
    document.querySelectorAll("input.js-tz").forEach(function (input) { input.value = tz; });
    document.querySelectorAll(".js-tz-name").forEach(function (el) { el.textContent = tz; });
    var format = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short"
    });
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      var moment = new Date(el.getAttribute("datetime"));
      if (!isNaN(moment.getTime())) { el.textContent = format.format(moment); el.title = el.getAttribute("datetime"); }
    });
  }

  function setupStatusForms() {
    document.querySelectorAll("form.js-status").forEach(function (form) {
      var select = form.querySelector("select[name=status]");
      select.addEventListener("change", function () {
        var status = select.value;
        select.disabled = true;
        fetch("/api/v1/tasks/" + form.getAttribute("data-task"), {
          method: "PATCH", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
          body: JSON.stringify({ status: status })
        }).then(function (response) {
          if (!response.ok) { throw new Error("status " + response.status); }
          return response.json();
        }).then(function (task) {
          var item = form.closest("li.task");
          if (item) {
            item.className = item.className.replace(/status-\S+/, "status-" + task.status);
            var badge = item.querySelector(".js-status-badge");
            if (badge) { badge.textContent = task.status.replace("_", " "); }
          }
          select.disabled = false;
          announce("“" + task.title + "” is now " + task.status.replace("_", " ") + ".");
        }).catch(function () {
          select.disabled = false;
          form.submit();  // the no-JavaScript path still works
        });
      });
    });
  }

  function describe(job) {
    if (job.status === "succeeded") {
      var size = ((job.size_bytes || 0) / 1024).toFixed(1) + " KiB";
      return (job.row_count !== null ? job.row_count + (job.row_count === 1 ? " task · " : " tasks · ") : "") + size;
    }
    if (job.status === "failed") { return job.error || "failed"; }
    return Math.round(job.progress * 100) + "% done";
  }

  function poll(item) {
    var url = item.getAttribute("data-status-url");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { if (!response.ok) { throw new Error("status " + response.status); } return response.json(); })
      .then(function (job) {
        item.className = item.className.replace(/status-\S+/, "status-" + job.status);
        item.setAttribute("data-status", job.status);
        item.querySelector(".js-job-status").textContent = job.status;
        var bar = item.querySelector(".js-job-progress");
        bar.value = job.progress;
        bar.textContent = Math.round(job.progress * 100) + "%";
        item.querySelector(".js-job-detail").textContent = describe(job);
        if (job.status === "succeeded" && job.download_url) {
          var link = item.querySelector(".js-job-download");
          link.href = job.download_url;
          link.hidden = false;
          announce("Job " + job.id + " is ready to download.");
        } else if (job.status === "failed") {
          announce("Job " + job.id + " failed.");
        } else {
          window.setTimeout(function () { poll(item); }, 1000);
        }
      })
      .catch(function () { window.setTimeout(function () { poll(item); }, 5000); });
  }

  function setupJobs() {
    document.querySelectorAll("li.job").forEach(function (item) {
      var status = item.getAttribute("data-status");
      if (status === "queued" || status === "running") { poll(item); }
    });
  }

  function start() { setupTimeZone(); setupStatusForms(); setupJobs(); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
