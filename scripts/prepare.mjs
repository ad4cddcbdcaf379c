// npm runs `prepare` after `npm ci` and `npm install`, which build the project, and again when the first
// `npx alveare` installs this checkout into npx's cache (npm_command "exec", in the checkout itself). The
// build is there already by then: making it again took that first run ~25 s, silently.
import { execSync } from "node:child_process";
import { existsSync } from "node:fs";

if (!(process.env.npm_command === "exec" && existsSync("dist/src/cli/main.js"))) execSync("npm run build", { stdio: "inherit" });
