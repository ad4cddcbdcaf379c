// Copies the charting library from node_modules into the served assets, so the
// dashboard loads it from its own origin (the CSP allows no other script source).
import { copyFileSync, mkdirSync } from "node:fs";

const root = new URL("../", import.meta.url);
mkdirSync(new URL("dist/dashboard/vendor/", root), { recursive: true });
copyFileSync(new URL("node_modules/chart.js/dist/chart.umd.min.js", root), new URL("dist/dashboard/vendor/chart.umd.min.js", root));

// The API reference at /docs: Swagger UI's bundle and stylesheet, same reason.
mkdirSync(new URL("dist/docs/vendor/", root), { recursive: true });
for (const file of ["swagger-ui-bundle.js", "swagger-ui.css"]) {
  copyFileSync(new URL(`node_modules/swagger-ui-dist/${file}`, root), new URL(`dist/docs/vendor/${file}`, root));
}
