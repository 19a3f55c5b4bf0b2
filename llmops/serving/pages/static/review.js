// The review queue: j/k move, u/d vote, c comment, ? help. Votes go to POST /v1/feedback
// without a reload; text from the server is only ever set as textContent.
"use strict";
(() => {
  const items = () => Array.from(document.querySelectorAll(".queue .item"));
  let current = -1;

  function select(i, focus = true) {
    const all = items();
    if (!all.length) return;
    current = Math.max(0, Math.min(all.length - 1, i));
    all.forEach((el, n) => el.classList.toggle("current", n === current));
    const el = all[current];
    if (focus) el.focus({ preventScroll: true });
    el.scrollIntoView({ block: "nearest" });
  }

  function itemOf(node) { return node.closest(".item"); }

  function box(item) { return item.querySelector(".comment-box"); }

  function setLabel(item, rating) {
    const label = box(item).querySelector("label");
    label.textContent = rating === "down"
      ? "Corrected answer (optional; fine-tuning learns from it)"
      : "Comment (optional; on a thumbs-down, the corrected answer)";
  }

  function openComment(item) {
    const b = box(item);
    b.hidden = false;
    b.querySelector("textarea").focus();
  }

  async function vote(item, rating) {
    const status = item.querySelector(".status");
    const comment = box(item).querySelector("textarea").value.trim();
    status.classList.remove("error");
    status.textContent = "saving…";
    let resp;
    try {
      resp = await window.llmops.post("/v1/feedback", {
        request_id: item.dataset.id, rating, comment: comment || null,
      });
    } catch (err) {
      status.classList.add("error");
      status.textContent = "not saved: the gateway did not answer";
      return;
    }
    if (!resp.ok) {
      let message = `not saved (HTTP ${resp.status})`;
      try {
        const body = await resp.json();
        if (body && body.error && body.error.message) message = `not saved: ${body.error.message}`;
      } catch (err) { /* not JSON */ }
      status.classList.add("error");
      status.textContent = message;
      if (resp.status === 401) window.location.assign("/signin?next=/review");
      return;
    }
    item.dataset.rating = rating;
    item.querySelector(".up").setAttribute("aria-pressed", String(rating === "up"));
    item.querySelector(".down").setAttribute("aria-pressed", String(rating === "down"));
    setLabel(item, rating);
    status.textContent = `your vote: ${rating}${comment ? " · with a comment" : ""} · saved`;
  }

  document.addEventListener("click", (ev) => {
    const button = ev.target.closest("button");
    if (!button) return;
    const item = itemOf(button);
    if (!item) return;
    select(items().indexOf(item), false);
    if (button.dataset.rating) vote(item, button.dataset.rating);
    else if (button.classList.contains("comment-toggle")) openComment(item);
  });

  document.addEventListener("keydown", (ev) => {
    const target = ev.target;
    const typing = target.matches && target.matches("input, textarea, select");
    if (typing) {
      if (target.tagName === "TEXTAREA" && ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        const item = itemOf(target);
        ev.preventDefault();
        vote(item, item.dataset.rating || "down");
      } else if (ev.key === "Escape" && itemOf(target)) {
        ev.preventDefault();
        itemOf(target).focus();
      }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const help = document.getElementById("keys");
    if (ev.key === "?") {
      ev.preventDefault();
      if (help.open) help.close(); else help.showModal();
      return;
    }
    if (help && help.open) return;
    const all = items();
    if (!all.length) return;
    if (current < 0 && ev.key !== "k") current = -1;
    switch (ev.key) {
      case "j": ev.preventDefault(); select(current + 1); break;
      case "k": ev.preventDefault(); select(current < 0 ? 0 : current - 1); break;
      case "u": case "d":
        ev.preventDefault();
        if (current < 0) select(0);
        vote(all[current], ev.key === "u" ? "up" : "down");
        break;
      case "c":
        ev.preventDefault();
        if (current < 0) select(0);
        openComment(all[current]);
        break;
      default:
    }
  });

  document.addEventListener("focusin", (ev) => {
    const item = ev.target.closest && ev.target.closest(".queue .item");
    if (item) {
      const i = items().indexOf(item);
      if (i !== current) {
        current = i;
        items().forEach((el, n) => el.classList.toggle("current", n === current));
      }
    }
  });
})();
