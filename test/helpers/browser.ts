import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

/** Why a browser test is skipped, or false when Debian's Chromium is there (.ci/run installs it). */
export const noChromium: string | false = !existsSync(CHROMIUM) && "Debian's chromium is not installed (.ci/run installs it)";

/** Headless Chromium with the flags this network needs (no background connections to anywhere). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}
