// The API page: Swagger UI (vendored from npm, static/vendor/swagger-ui/) renders the app's own OpenAPI document.
"use strict";
(function () {
  var element = document.getElementById("swagger-ui");
  if (!element || !window.SwaggerUIBundle) return;
  // Swagger UI renders the server picker without a label; name every unnamed select for screen readers.
  new MutationObserver(function () {
    element.querySelectorAll("select:not([aria-label])").forEach(function (select) {
      select.setAttribute("aria-label", select.id === "servers" ? "Server" : "Choice");
    });
  }).observe(element, {childList: true, subtree: true});
  window.SwaggerUIBundle({url: element.dataset.spec, dom_id: "#swagger-ui", deepLinking: false,
                          defaultModelsExpandDepth: 0, tryItOutEnabled: false, validatorUrl: null});
})();
