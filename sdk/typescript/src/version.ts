/** This package's version, as in its package.json (a test checks they agree). */
export const VERSION = "0.2.0";
