// Comfort only: every page works without this file.
"use strict";

// Script errors are counted on the root element (data-js-errors), for the inspector and tests.
window.addEventListener("error", () => {
  const root = document.documentElement;
  root.dataset.jsErrors = String(Number(root.dataset.jsErrors || 0) + 1);
});

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
