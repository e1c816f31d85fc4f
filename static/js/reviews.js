// Comfort only: reloads a review page while a review is being generated (the page also has a
// Refresh link, and works without this file).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const marker = document.querySelector("[data-review-refresh]");
  if (marker) {
    const seconds = Number(marker.dataset.reviewRefresh) || 3;
    window.setTimeout(() => window.location.reload(), seconds * 1000);
  }
});
