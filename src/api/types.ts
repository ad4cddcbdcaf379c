/** The API's bodies are defined once, in the TypeScript SDK, and shared by the server. */
export * from "../../sdk/typescript/src/types.js";
