// sluice console: live regions (server-sent events) and actions through the
// /v1/admin/ routes. No framework, no build step; the server escapes every
// region's HTML, and this file writes text with textContent only.
"use strict";

(function () {
  const body = document.body;
  const csrf = body.dataset.csrf || "";
  const flash = document.getElementById("flash");

  function say(text, bad) {
    if (!flash) return;
    flash.textContent = text;
    flash.className = bad ? "bad" : "ok";
  }

  // Live regions: each event maps a region to its new HTML, rendered and
  // escaped by the server's templates. Focus is kept on the element that had it.
  function startLive() {
    const query = body.dataset.live;
    if (!query || !window.EventSource) return;
    const es = new EventSource("/console/live?" + query);
    es.onmessage = function (ev) {
      const regions = JSON.parse(ev.data);
      for (const name of Object.keys(regions)) {
        const el = document.querySelector('[data-region="' + name + '"]');
        if (!el) continue;
        const active = document.activeElement;
        const focusID = active && el.contains(active) ? active.id : "";
        el.innerHTML = regions[name];
        if (focusID) {
          const again = document.getElementById(focusID);
          if (again) again.focus();
        }
      }
      body.dataset.updated = String(Date.now());
    };
    window.addEventListener("pagehide", function () { es.close(); });
  }

  // formBody builds the JSON body of an action form from its named fields:
  // data-type="bool" fields are booleans, number fields integers, empty
  // fields are left out, data-only-mode fields only for that mode.
  function formBody(form) {
    const out = {};
    const mode = form.elements.mode ? form.elements.mode.value : "";
    for (const el of form.elements) {
      if (!el.name || el.value === "") continue;
      if (el.dataset.onlyMode && el.dataset.onlyMode !== mode) continue;
      if (el.dataset.type === "bool") out[el.name] = el.value === "true";
      else if (el.type === "number") out[el.name] = parseInt(el.value, 10);
      else out[el.name] = el.value;
    }
    return out;
  }

  // confirmStop asks before a stop, saying how many queued messages it purges.
  function confirmStop(form) {
    return new Promise(function (resolve) {
      const dlg = document.getElementById("confirm-stop");
      let queued = form.dataset.queued || "";
      if (form.dataset.queuedRef) {
        const el = document.getElementById(form.dataset.queuedRef);
        if (el) queued = el.textContent;
      }
      document.getElementById("confirm-text").textContent =
        "Stop " + (form.dataset.name || "this conversation") + "? " + queued +
        " queued message(s) will be purged (counted as purged).";
      dlg.returnValue = "";
      dlg.addEventListener("close", function () { resolve(dlg.returnValue === "stop"); }, { once: true });
      dlg.showModal();
    });
  }

  async function act(form) {
    if (form.dataset.confirm === "stop" && !(await confirmStop(form))) {
      say("Nothing stopped.");
      return;
    }
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    say("Working…");
    try {
      const data = formBody(form);
      const resp = await fetch(form.dataset.api, {
        method: form.dataset.method || "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: Object.keys(data).length ? JSON.stringify(data) : null,
        credentials: "same-origin",
      });
      const answer = await resp.json().catch(function () { return {}; });
      if (!resp.ok) {
        say("Refused (" + resp.status + "): " + (answer.detail || answer.title || "error"), true);
        return;
      }
      if (answer.purged !== undefined) {
        say("Stopped: " + answer.purged + " queued message(s) purged.");
      } else if (answer.state) {
        say("Done: " + answer.tenant + "/" + answer.conversation + " is " + answer.state + ".");
      } else {
        say("Done: the fleet follows within a second.");
      }
    } catch (err) {
      say("The request failed: " + err, true);
    } finally {
      if (button) button.disabled = false;
    }
  }

  document.addEventListener("submit", function (ev) {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("api")) return;
    ev.preventDefault();
    act(form);
  });

  startLive();
})();
