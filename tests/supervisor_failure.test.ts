/**
 * The safety net for the supervisor's own bugs: an error escaping a
 * background task must end in the same clean stop a signal gives (deregister,
 * stop Navidrome) and exit 1, never in a crash that leaves Navidrome running
 * unsupervised. Driven in-process, with an agent whose answer breaks the code
 * that reads it.
 * @module
 */

import { assert, assertEquals } from "./support/assert.ts";
import { LiteFsSim } from "./support/litefs_sim.ts";
import { processAlive, waitFor } from "./support/wait.ts";
import { loadConfig } from "../lib/config.ts";
import type { AgentService } from "../lib/consul_agent.ts";
import { EXIT } from "../lib/decide.ts";
import { type AgentLike, Supervisor } from "../lib/supervisor.ts";

Deno.test("an internal error deregisters, stops Navidrome and exits 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ndls-fail-" });
  const sim = await LiteFsSim.start({
    mountDir: `${dir}/mount`,
    hostname: "node-a",
    isPrimary: true,
  });
  const ping = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("."),
  );
  const calls: string[] = [];
  const ok = <T>(value: T) => Promise.resolve({ ok: true as const, value });
  // Reading any field of this "service" throws: a stand-in for a bug in our code.
  const poisoned = new Proxy({}, {
    get() {
      throw new Error("poisoned answer");
    },
  }) as AgentService;
  const agent: AgentLike = {
    register: () => (calls.push("register"), ok(undefined)),
    deregister: () => (calls.push("deregister"), ok(undefined)),
    passCheck: () => ok(true),
    service: () => (calls.push("sync"), ok(poisoned)),
    close: () => {},
  };
  const env: Record<string, string> = {
    NDLS_MOUNT_DIR: `${dir}/mount`,
    NDLS_LITEFS_API: sim.url,
    NDLS_HEALTH_URL: `http://127.0.0.1:${ping.addr.port}/ping`,
    NDLS_CONSUL_SYNC_INTERVAL: "100ms",
    NDLS_HOSTNAME: "node-a",
  };
  const config = loadConfig({
    env: (n) => env[n],
    readTextFile: () => {
      throw new Deno.errors.NotFound("no litefs.yml");
    },
    systemHostname: () => "node-a",
  });
  const sup = new Supervisor(config, ["/bin/sleep", "60"], { agent });
  try {
    const running = sup.run();
    const pid = await waitFor(() => sup.status().child.pid, { timeoutMs: 5_000, what: "child" });
    assertEquals(await running, EXIT.failure);
    assertEquals(calls.slice(-1), ["deregister"], `calls: ${calls.join(", ")}`);
    assert(calls.includes("register") && calls.includes("sync"), "the poisoned answer was read");
    assert(!processAlive(pid), "Navidrome was stopped before the exit");
    assertEquals(sup.status().child.pid, null);
  } finally {
    await ping.shutdown();
    await sim.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
