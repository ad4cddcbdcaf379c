import { EmbeddedEngine } from "../engines/embedded/embedded-engine.js";
import { RemoteEngine } from "../engines/remote/remote-engine.js";
import type { Specialist } from "../specialists/specialist.js";
import { addDurations } from "./duration-counts.js";
import type { EngineLoad, LoadSources, UpstreamHealth, UpstreamTraffic } from "./prometheus.js";

/** Reads queue depth, busy sequences and upstream health off the engines of the specialists. */
export function loadSources(specialists: () => readonly Specialist[]): LoadSources {
  return {
    engines(): EngineLoad[] {
      // Engines that share a name are summed: specialists on one upstream with different timeouts get an engine each.
      const byName = new Map<string, EngineLoad>();
      for (const engine of new Set(specialists().map((s) => s.engine))) {
        let load: { queued: number; busy: number };
        if (engine instanceof EmbeddedEngine) load = { queued: engine.queued, busy: engine.busy };
        else if (engine instanceof RemoteEngine) load = { queued: 0, busy: engine.exchanges.reduce((n, u) => n + u.inFlight, 0) };
        else continue;
        const sum = byName.get(engine.name);
        if (sum === undefined) byName.set(engine.name, { engine: engine.name, ...load });
        else {
          sum.queued += load.queued;
          sum.busy += load.busy;
        }
      }
      return [...byName.values()];
    },
    upstreamTraffic(): UpstreamTraffic[] {
      const byUpstream = new Map<string, UpstreamTraffic>();
      const engines = new Set(specialists().map(({ engine }) => engine));
      for (const engine of engines) {
        if (!(engine instanceof RemoteEngine)) continue;
        for (const u of engine.exchanges) {
          const key = `${u.upstream}\u0000${u.model}`;
          const sum = byUpstream.get(key);
          if (sum === undefined) {
            byUpstream.set(key, u);
            continue;
          }
          sum.inFlight += u.inFlight;
          sum.seconds += u.seconds;
          addDurations(sum.durations, u.durations);
          for (const [outcome, n] of Object.entries(u.outcomes)) sum.outcomes[outcome] = (sum.outcomes[outcome] ?? 0) + n;
        }
      }
      return [...byUpstream.values()];
    },
    upstreams(): UpstreamHealth[] {
      return specialists().flatMap(({ id, engine }) =>
        engine instanceof RemoteEngine ? engine.exchanges.map(({ upstream, healthy }) => ({ specialist: id, upstream, healthy })) : [],
      );
    },
  };
}
