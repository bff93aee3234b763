/**
 * The safety net for the supervisor's own bugs: an error escaping a
 * background task must end in the same clean stop a signal gives (deregister,
 * stop Navidrome) and exit 1, never in a crash that leaves Navidrome running
 * unsupervised. Driven in-process, with an agent whose answer can break the
 * code that reads it.
 * @module
 */

import { assert, assertEquals, assertIncludes } from "./support/assert.ts";
import { LiteFsSim } from "./support/litefs_sim.ts";
import { processAlive, waitFor } from "./support/wait.ts";
import { loadConfig } from "../lib/config.ts";
import type { AgentService } from "../lib/consul_agent.ts";
import { EXIT } from "../lib/decide.ts";
import { setupLogging } from "../lib/log.ts";
import { type AgentLike, Supervisor } from "../lib/supervisor.ts";

/** One in-process supervisor of `sleep 60`, primary, with a recording agent. */
interface Rig {
  sup: Supervisor;
  calls: string[];
  log: string[];
  /** Makes the agent's next service read-back an answer that throws when read. */
  poison(): void;
}

async function withRig(body: (rig: Rig) => Promise<void>): Promise<void> {
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
  const log: string[] = [];
  setupLogging({ format: "text", level: "info", secrets: [], write: (l) => log.push(l) });
  let poisoned = false;
  const ok = <T>(value: T) => Promise.resolve({ ok: true as const, value });
  // Reading any field of this "service" throws: a stand-in for a bug in our code.
  const poison = new Proxy({}, {
    get() {
      throw new Error("poisoned answer");
    },
  }) as AgentService;
  const agent: AgentLike = {
    register: () => (calls.push("register"), ok(undefined)),
    deregister: () => (calls.push("deregister"), ok(undefined)),
    passCheck: () => ok(true),
    service: () => (calls.push("sync"), ok(poisoned ? poison : null)),
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
    await body({ sup, calls, log, poison: () => (poisoned = true) });
  } finally {
    await ping.shutdown();
    await sim.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Starts the loop and waits until Navidrome runs and is registered; returns the child pid. */
async function running(rig: Rig, run: Promise<number>): Promise<number> {
  const pid = await waitFor(() => rig.sup.status().child.pid, { timeoutMs: 5_000, what: "child" });
  await waitFor(() => rig.calls.includes("register"), { timeoutMs: 5_000, what: "register" });
  assertEquals(await Promise.race([run, Promise.resolve("running")]), "running");
  return pid;
}

Deno.test("an internal error deregisters, stops Navidrome and exits 1", async () => {
  await withRig(async (rig) => {
    const run = rig.sup.run();
    const pid = await running(rig, run);
    rig.poison();
    assertEquals(await run, EXIT.failure);
    assertEquals(rig.calls.slice(-1), ["deregister"], `calls: ${rig.calls.join(", ")}`);
    assert(!processAlive(pid), "Navidrome was stopped before the exit");
    assertIncludes(rig.log.join(""), "internal error, stopping: poisoned answer");
  });
});

Deno.test("a signal during an internal error's stop is a first signal: graceful, and exit 1", async () => {
  await withRig(async (rig) => {
    const run = rig.sup.run();
    await running(rig, run);
    rig.sup.fail(new Error("a bug"));
    rig.sup.requestShutdown("SIGTERM");
    assertEquals(await run, EXIT.failure);
    const log = rig.log.join("");
    assertIncludes(log, "SIGTERM: stopping gracefully");
    assertIncludes(log, "(signal SIGTERM)");
  });
});

Deno.test("an internal error during a signal's stop still exits 1", async () => {
  await withRig(async (rig) => {
    const run = rig.sup.run();
    await running(rig, run);
    rig.sup.requestShutdown("SIGTERM");
    rig.sup.fail(new Error("a bug"));
    assertEquals(await run, EXIT.failure);
    assertEquals(rig.calls.slice(-1), ["deregister"]);
  });
});
