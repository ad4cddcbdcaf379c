// Copies the charting library from node_modules into the served assets, so the
// dashboard loads it from its own origin (the CSP allows no other script source).
import { copyFileSync, mkdirSync } from "node:fs";

const root = new URL("../", import.meta.url);
mkdirSync(new URL("dist/dashboard/vendor/", root), { recursive: true });
copyFileSync(new URL("node_modules/chart.js/dist/chart.umd.min.js", root), new URL("dist/dashboard/vendor/chart.umd.min.js", root));
