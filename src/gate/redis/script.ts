import { createHash } from "node:crypto";
import type { Redis } from "ioredis";

/**
 * A Lua script run by its hash, loaded again when Redis has forgotten it (a
 * restart flushes the script cache): one round trip in the usual case.
 */
export class LuaScript {
  private readonly sha: string;

  constructor(private readonly lua: string) {
    this.sha = createHash("sha1").update(lua).digest("hex");
  }

  async run(redis: Redis, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
      return redis.eval(this.lua, keys.length, ...keys, ...args);
    }
  }

  /**
   * The script sent whole: never answered NOSCRIPT, so it runs in the order it was sent in, even on
   * a Redis that has just forgotten its scripts (a NOSCRIPT answer would send it again, after what
   * followed it).
   */
  runInOrder(redis: Redis, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    return redis.eval(this.lua, keys.length, ...keys, ...args);
  }
}

/** The current time in ms inside a script: the injected clock's when given (tests), else Redis's own, one clock for every node. */
export const LUA_NOW = `
local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;
