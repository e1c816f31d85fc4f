// Comfort only: every page works without this file.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  document.documentElement.dataset.js = "on";

  // Confirmation for dangerous actions: <form data-confirm="What will happen">.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    });
  }
});
