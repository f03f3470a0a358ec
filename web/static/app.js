// Taskdeck: small enhancements on top of pages that work without JavaScript.
// - dates in the browser's time zone (the server renders UTC until it knows the zone from the `tz` cookie)
// - inline task status change and the done checkbox without a reload (PATCH to the JSON API with the session's
//   CSRF token); a finished task moves to the "Done" list and back
// - export/report progress updated in place (polling the job's JSON resource), expiry included
// - keyboard shortcuts: n (new task), / (search), ? (the list of shortcuts); never while typing in a field
// - file uploads with a progress bar (XMLHttpRequest to the JSON API: fetch reports no upload progress)
// - live updates: a page with [data-live-project] (and [data-live-task]) listens to /api/v1/events; when an
//   event concerns it, the page is fetched again and each [data-live-region] is replaced in place, except
//   one holding the focus (someone typing there keeps their text)
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

  var dateFormat = null;

  function formatDate(iso) {
    var moment = new Date(iso);
    return isNaN(moment.getTime()) ? iso : dateFormat.format(moment);
  }

  function timeElement(iso) {
    var el = document.createElement("time");
    el.setAttribute("datetime", iso);
    el.title = iso;
    el.textContent = formatDate(iso);
    return el;
  }

  function setupTimeZone() {
    var tz = zone();
    var current = (document.cookie.match(/(?:^|; )tz=([^;]*)/) || [])[1];
    if (decodeURIComponent(current || "") !== tz) {
      document.cookie = "tz=" + encodeURIComponent(tz) + "; path=/; max-age=31536000; samesite=lax";
    }
    document.querySelectorAll("input.js-tz").forEach(function (input) { input.value = tz; });
    document.querySelectorAll(".js-tz-name").forEach(function (el) { el.textContent = tz; });
    dateFormat = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short"
    });
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      el.textContent = formatDate(el.getAttribute("datetime"));
      el.title = el.getAttribute("datetime");
    });
  }

  function patchStatus(taskId, status) {
    return fetch("/api/v1/tasks/" + taskId, {
      method: "PATCH", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ status: status })
    }).then(function (response) {
      if (!response.ok) { throw new Error("status " + response.status); }
      return response.json();
    });
  }

  // One task's row after a status change: its class, checkbox, select and overdue mark, and its list.
  function showStatus(item, task) {
    var done = task.status === "done";
    item.className = item.className.replace(/status-\S+/, "status-" + task.status);
    var box = item.querySelector(".check-box");
    if (box) {
      box.setAttribute("aria-checked", done ? "true" : "false");
      box.title = done ? "Mark as not done" : "Mark as done";
      box.form.querySelector("input[name=status]").value = done ? "todo" : "done";
    }
    var select = item.querySelector("select[name=status]");
    if (select) { select.value = task.status; }
    var overdue = item.querySelector(".js-overdue");
    if (overdue) {
      overdue.hidden = done;
      item.classList.toggle("overdue", !done);
    }
    var target = document.querySelector(done ? ".js-done-list" : ".js-open-list");
    if (target && item.parentNode !== target) {
      target.insertBefore(item, target.firstChild);
      var section = target.closest(".js-done-section");
      if (section) { section.hidden = false; }
      var empty = document.querySelector(".js-open-empty");
      if (empty && !done) { empty.hidden = true; }
    }
  }

  function setupStatusForms() {
    document.querySelectorAll("form.js-status").forEach(function (form) {
      var select = form.querySelector("select[name=status]");
      select.addEventListener("change", function () {
        select.disabled = true;
        patchStatus(form.getAttribute("data-task"), select.value).then(function (task) {
          select.disabled = false;
          var item = form.closest("li.task");
          if (item) { showStatus(item, task); }
          select.focus();
          announce("“" + task.title + "” is now " + task.status.replace("_", " ") + ".");
        }).catch(function () {
          select.disabled = false;
          form.submit();  // the no-JavaScript path still works
        });
      });
    });
    document.querySelectorAll("form.js-done").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var item = form.closest("li.task");
        var box = form.querySelector(".check-box");
        box.disabled = true;
        patchStatus(item.getAttribute("data-task"), form.querySelector("input[name=status]").value)
          .then(function (task) {
            box.disabled = false;
            showStatus(item, task);
            box.focus();
            announce("“" + task.title + "” is " + (task.status === "done" ? "done." : "not done any more."));
          }).catch(function () {
            box.disabled = false;
            form.submit();
          });
      });
    });
  }

  // The job's detail line, as the server renders it (exports.html): for a finished file, rows, size and expiry.
  function describe(detail, job) {
    detail.textContent = "";
    if (job.status === "succeeded") {
      var size = ((job.size_bytes || 0) / 1024).toFixed(1) + " KiB";
      detail.textContent = (job.row_count !== null && job.row_count !== undefined
        ? job.row_count + (job.row_count === 1 ? " task · " : " tasks · ") : "") + size;
      if (job.expires_at) {
        detail.appendChild(document.createTextNode(" · until "));
        detail.appendChild(timeElement(job.expires_at));
      }
    } else if (job.status === "failed") {
      detail.textContent = job.error || "failed";
    } else {
      detail.textContent = Math.round(job.progress * 100) + "% done";
    }
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
        describe(item.querySelector(".js-job-detail"), job);
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

  function typing(el) {
    if (!el || !el.tagName) { return false; }
    var tag = el.tagName.toLowerCase();
    return el.isContentEditable || tag === "input" || tag === "textarea" || tag === "select";
  }

  function focusNewTask() {
    var title = document.querySelector("#new-task input[name=title]");
    if (!title) { window.location.href = "/tasks#new-task"; return; }
    title.scrollIntoView({ block: "center" });
    title.focus();
  }

  function focusSearch() {
    var search = document.getElementById("f-q") || document.querySelector("main input[type=search]");
    if (!search) { window.location.href = "/tasks#search"; return; }
    var details = search.closest("details");
    if (details) { details.open = true; }
    search.scrollIntoView({ block: "center" });
    search.focus();
  }

  function setupShortcuts() {
    if (document.body.getAttribute("data-shortcuts") !== "on") { return; }
    var help = document.getElementById("shortcuts");
    document.querySelectorAll(".js-only").forEach(function (el) { el.hidden = false; });
    document.querySelectorAll(".js-shortcuts-open").forEach(function (button) {
      button.addEventListener("click", function () { help.showModal(); });
    });
    document.addEventListener("keydown", function (event) {
      if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing
          || typing(event.target)) { return; }
      if (event.key === "?") {
        event.preventDefault();
        if (help.open) { help.close(); } else { help.showModal(); }
      } else if (help.open) {
        return;  // the list is modal: other keys do nothing behind it
      } else if (event.key === "n") {
        event.preventDefault();
        focusNewTask();
      } else if (event.key === "/") {
        event.preventDefault();
        focusSearch();
      }
    });
    // Arrived through "n" or "/" from another page: focus once the browser has scrolled to the fragment
    // (Chromium clears focus when it does).
    var arrival = { "#new-task": focusNewTask, "#search": focusSearch }[window.location.hash];
    if (arrival) {
      if (document.readyState === "complete") { window.setTimeout(arrival, 0); }
      else { window.addEventListener("load", function () { window.setTimeout(arrival, 0); }); }
    }
  }

  function setupUploads() {
    document.querySelectorAll("form[data-upload]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        var input = form.querySelector('input[type="file"]');
        if (!input || !input.files.length) { return; }  // the browser's own "required" message
        event.preventDefault();
        var bar = form.querySelector("progress");
        var button = form.querySelector('button[type="submit"]');
        var body = new FormData();
        body.append("file", input.files[0]);
        var request = new XMLHttpRequest();
        request.open("POST", form.getAttribute("data-upload"));
        request.setRequestHeader("X-CSRF-Token", csrf);
        request.setRequestHeader("Accept", "application/json");
        request.upload.addEventListener("progress", function (e) {
          if (bar && e.lengthComputable) { bar.max = e.total; bar.value = e.loaded; }
        });
        request.addEventListener("load", function () {
          if (request.status === 201) { window.location.hash = "files"; window.location.reload(); return; }
          var detail = "The upload failed.";
          try { detail = JSON.parse(request.responseText).detail || detail; } catch (e) { /* not JSON */ }
          try {
            var errors = JSON.parse(request.responseText).errors;
            if (errors && errors.file) { detail = errors.file.join(" "); }
          } catch (e) { /* not JSON */ }
          announce(detail);
          window.alert(detail);
          if (button) { button.disabled = false; }
          if (bar) { bar.hidden = true; }
        });
        request.addEventListener("error", function () {
          announce("The upload was interrupted.");
          if (button) { button.disabled = false; }
        });
        if (bar) { bar.hidden = false; bar.value = 0; }
        if (button) { button.disabled = true; }
        request.send(body);
      });
    });
  }

  var EVENT_TYPES = ["task.created", "task.updated", "task.completed", "task.deleted", "task.restored",
    "comment.created", "comment.updated", "comment.deleted", "attachment.created", "attachment.deleted",
    "project.created", "project.updated", "project.deleted", "member.added", "member.updated", "member.removed"];

  function refreshRegions() {
    return fetch(window.location.pathname + window.location.search, {
      credentials: "same-origin", headers: { "Accept": "text/html" }
    }).then(function (response) {
      if (!response.ok) { throw new Error("status " + response.status); }
      return response.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      document.querySelectorAll("[data-live-region]").forEach(function (region) {
        var name = region.getAttribute("data-live-region");
        var next = fresh.querySelector('[data-live-region="' + name + '"]');
        if (next && !region.contains(document.activeElement)) { region.innerHTML = next.innerHTML; }
      });
      setupTimeZone();
    });
  }

  function setupLive() {
    var scope = document.querySelector("[data-live-project]");
    if (!scope || typeof window.EventSource !== "function") { return; }
    var projectId = Number(scope.getAttribute("data-live-project"));
    var taskId = Number(scope.getAttribute("data-live-task") || 0);
    var pending = null;
    var source = new window.EventSource("/api/v1/events");
    function concerns(event) {
      if (taskId) { return event.task_id === taskId || (event.task_id === null && event.project_id === projectId); }
      return event.project_id === projectId;
    }
    function onEvent(message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      if (!concerns(event)) { return; }
      var who = event.actor && event.actor.name ? event.actor.name : "Someone";
      if (event.type === "project.deleted" || (taskId && event.type === "task.deleted" && event.task_id === taskId)) {
        announce(who + " deleted this " + (event.type === "project.deleted" ? "project" : "task") + ".");
        source.close();
        return;
      }
      window.clearTimeout(pending);  // a burst of events costs one fetch
      pending = window.setTimeout(function () {
        refreshRegions().then(function () { announce("Updated: " + who + " made a change."); })
          .catch(function () { /* the next event or a reload shows it */ });
      }, 150);
    }
    EVENT_TYPES.forEach(function (type) { source.addEventListener(type, onEvent); });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  function start() { setupTimeZone(); setupStatusForms(); setupJobs(); setupShortcuts(); setupUploads(); setupLive(); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
