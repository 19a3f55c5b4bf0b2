// llmops pages: the session's CSRF token and sign-out. No HTML strings are built here.
"use strict";
window.llmops = {
  csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  },
  async post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": this.csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  },
};
document.addEventListener("DOMContentLoaded", () => {
  const out = document.getElementById("signout");
  if (out) {
    out.addEventListener("click", async () => {
      await window.llmops.post("/signout");
      window.location.assign("/signin");
    });
  }
});
