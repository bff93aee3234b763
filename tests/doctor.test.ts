/**
 * `doctor` as a user runs it: a real process with the compile task's
 * permissions, against the Consul double with ACLs and the LiteFS simulator.
 * Every case also checks that the token never reaches the output.
 * @module
 */

import { assert, assertEquals, assertExcludes, assertIncludes } from "./support/assert.ts";
import { ConsulDouble } from "./support/consul_double.ts";
import { LiteFsSim } from "./support/litefs_sim.ts";
import { supervisorCommand } from "./support/permissions.ts";
import { freePort, waitFor } from "./support/wait.ts";
import { mountRow } from "../lib/doctor.ts";

const TOKEN = "d0c70r-7e57-70ken-5ecre7-value";
const DENIED_TOKEN = "den1ed-70ken-5ecre7-value";
const READLESS_TOKEN = "n0-agen7-read-70ken-value";
/** The double's answer delay in the interrupt test. */
const LATENCY_MS = 800;
const ACCESSOR = "11111111-2222-3333-4444-555555555555";

/** A doctor run's result. */
interface DoctorRun {
  code: number;
  stdout: string;
  stderr: string;
  /** Rows of the printed table: check, result, detail. */
  rows: { check: string; result: string; detail: string }[];
}

/** Parses the doctor's table (`CHECK  RESULT  DETAIL` header, aligned columns). */
function parseTable(stdout: string): DoctorRun["rows"] {
  const lines = stdout.split("\n").filter((l) => l.trim() !== "");
  const header = lines.findIndex((l) => /^CHECK\s+RESULT\s+DETAIL/.test(l));
  if (header < 0) return [];
  return lines.slice(header + 1).map((l) => {
    const m = /^(.+?)\s+(PASS|WARN|FAIL)\s+(.*)$/.exec(l);
    if (!m) throw new Error(`unparsable doctor row: ${l}`);
    return { check: m[1].trim(), result: m[2], detail: m[3] };
  });
}

/** The environment of a doctor run against `consulUrl`, in a fresh temp dir. */
interface Stage {
  dir: string;
  mountDir: string;
  env: Record<string, string>;
}

async function stage(consulUrl: string, token: string | null): Promise<Stage> {
  const dir = await Deno.makeTempDir({ prefix: "ndls-doctor-" });
  const mountDir = `${dir}/mount`;
  await Deno.mkdir(mountDir);
  await Deno.writeTextFile(`${dir}/litefs.yml`, `fuse:\n  dir: "${mountDir}"\n`);
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? dir,
    NO_COLOR: "1",
    HOSTNAME: "node-a",
    NDLS_LITEFS_CONFIG: `${dir}/litefs.yml`,
    // Unreachable unless a test points it at a simulator.
    NDLS_LITEFS_API: `http://127.0.0.1:${freePort()}`,
    CONSUL_HTTP_ADDR: consulUrl,
  };
  if (token !== null) env.CONSUL_HTTP_TOKEN = token;
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir) env.DENO_DIR = denoDir;
  return { dir, mountDir, env };
}

function spawnDoctor(env: Record<string, string>): Deno.ChildProcess {
  const [cmd, ...args] = supervisorCommand();
  return new Deno.Command(cmd, {
    args: [...args, "doctor"],
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function runDoctor(env: Record<string, string>): Promise<DoctorRun> {
  const out = await spawnDoctor(env).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  return { code: out.code, stdout, stderr, rows: parseTable(stdout) };
}

function row(run: DoctorRun, check: string): DoctorRun["rows"][number] {
  const r = run.rows.find((x) => x.check === check);
  assert(r, `no ${check} row in:\n${run.stdout}${run.stderr}`);
  return r;
}

function assertNoToken(run: DoctorRun, ...tokens: string[]): void {
  for (const t of [TOKEN, DENIED_TOKEN, READLESS_TOKEN, ...tokens]) {
    assertExcludes(run.stdout + run.stderr, t, "the token appeared in doctor's output");
  }
}

/** Runs `body` with an ACL-enforcing double and a staged environment; cleans up. */
async function withConsul(
  token: string | null,
  body: (consul: ConsulDouble, s: Stage) => Promise<void>,
  latencyMs = 0,
): Promise<void> {
  const consul = await ConsulDouble.start({
    latencyMs,
    aclTokens: {
      [TOKEN]: { serviceWrite: true, agentRead: true },
      [DENIED_TOKEN]: { serviceWrite: false, agentRead: true, accessorId: ACCESSOR },
      [READLESS_TOKEN]: { serviceWrite: true, agentRead: false },
    },
  });
  const s = await stage(consul.url, token);
  try {
    await body(consul, s);
  } finally {
    await consul.stop();
    await Deno.remove(s.dir, { recursive: true });
  }
}

/** Register and deregister calls of doctor's throwaway services. */
function probeCalls(consul: ConsulDouble) {
  return {
    registers: consul.calls.filter((c) => c.path.startsWith("/v1/agent/service/register")),
    deregisters: consul.calls.filter((c) => c.path.includes("/deregister/")),
  };
}

Deno.test("doctor passes with a good token and removes its throwaway service", async () => {
  await withConsul(TOKEN, async (consul, s) => {
    const run = await runDoctor(s.env);
    assertEquals(run.code, 0, run.stdout + run.stderr);
    assertEquals(row(run, "settings").result, "PASS");
    assertEquals(row(run, "consul agent").result, "PASS");
    assertIncludes(row(run, "consul agent").detail, "node consul-double");
    assertEquals(row(run, "consul token").result, "PASS");
    assertIncludes(row(run, "consul token").detail, `"navidrome"`);
    const { registers, deregisters } = probeCalls(consul);
    assertEquals(registers.length, 1);
    assertEquals(registers[0].status, 200);
    assertIncludes(registers[0].body, `"Name":"navidrome"`);
    assertEquals(deregisters.length, 1);
    assertEquals(deregisters[0].status, 200);
    assertEquals(consul.services(), [], "throwaway service left behind");
    assertNoToken(run);
  });
});

Deno.test("doctor fails a token denied service:write, quoting the agent", async () => {
  await withConsul(DENIED_TOKEN, async (consul, s) => {
    const run = await runDoctor(s.env);
    assertEquals(run.code, 1, run.stdout);
    const token = row(run, "consul token");
    assertEquals(token.result, "FAIL");
    // The agent's own words, including the AccessorID (which is not secret).
    assertIncludes(
      token.detail,
      `403 Permission denied: token with AccessorID '${ACCESSOR}' lacks permission ` +
        `'service:write' on "navidrome"`,
    );
    assertEquals(consul.services(), []);
    assertNoToken(run);
  });
});

Deno.test("doctor fails a token the agent does not know", async () => {
  await withConsul("no-such-70ken-value", async (_consul, s) => {
    const run = await runDoctor(s.env);
    assertEquals(run.code, 1);
    assertEquals(row(run, "consul agent").result, "FAIL");
    assertIncludes(row(run, "consul agent").detail, "ACL not found");
    assertNoToken(run, "no-such-70ken-value");
  });
});

Deno.test("doctor only warns when the token may not read the agent but may register", async () => {
  await withConsul(READLESS_TOKEN, async (consul, s) => {
    const run = await runDoctor(s.env);
    assertEquals(run.code, 0, run.stdout);
    assertEquals(row(run, "consul agent").result, "WARN");
    assertIncludes(row(run, "consul agent").detail, "lacks permission 'agent:read'");
    assertEquals(row(run, "consul token").result, "PASS");
    assertEquals(consul.services(), []);
    assertNoToken(run);
  });
});

Deno.test("doctor probes the replica service name too when one is configured", async () => {
  await withConsul(TOKEN, async (consul, s) => {
    const run = await runDoctor({ ...s.env, NDLS_REPLICA_SERVICE_NAME: "navidrome-replica" });
    assertEquals(run.code, 0, run.stdout);
    const tokens = run.rows.filter((r) => r.check === "consul token");
    assertEquals(tokens.map((r) => r.result), ["PASS", "PASS"]);
    assertIncludes(tokens[1].detail, `"navidrome-replica"`);
    assertEquals(consul.services(), []);
  });
});

Deno.test("doctor fails when the Consul agent is down", async () => {
  const s = await stage(`http://127.0.0.1:${freePort()}`, TOKEN);
  try {
    const run = await runDoctor(s.env);
    assertEquals(run.code, 1);
    const agent = row(run, "consul agent");
    assertEquals(agent.result, "FAIL");
    assertIncludes(agent.detail, s.env.CONSUL_HTTP_ADDR);
    const token = row(run, "consul token");
    assertEquals([token.result, token.detail], [
      "WARN",
      "not checked: it needs an agent that answers",
    ]);
    assertNoToken(run);
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("doctor reports each invalid setting on its own FAIL line", async () => {
  const s = await stage("http://127.0.0.1:1", TOKEN);
  try {
    const run = await runDoctor({
      ...s.env,
      CONSUL_HTTP_ADDR: "unix:///run/consul.sock",
      NDLS_POLL_INTERVAL: "fast",
      NDLS_SERVICE_PORT: "99999",
      // A typo beside failing settings is still named: it is often their cause.
      NDLS_LITEFS_CONFG: "/my/litefs.yml",
    });
    assertEquals(run.code, 1);
    const settings = run.rows.filter((r) => r.check === "settings");
    assertEquals(settings.map((r) => r.result), ["FAIL", "FAIL", "FAIL", "WARN"], run.stdout);
    assertIncludes(settings[3].detail, "NDLS_LITEFS_CONFG is not a setting");
    const text = settings.map((r) => r.detail).join("\n");
    assertIncludes(text, "CONSUL_HTTP_ADDR=");
    assertIncludes(text, `NDLS_POLL_INTERVAL="fast"`);
    assertIncludes(text, `NDLS_SERVICE_PORT="99999"`);
    assertNoToken(run);
  } finally {
    await Deno.remove(s.dir, { recursive: true });
  }
});

Deno.test("doctor reports this node's LiteFS role when the API answers", async () => {
  await withConsul(TOKEN, async (_consul, s) => {
    const sim = await LiteFsSim.start({
      mountDir: s.mountDir,
      hostname: "node-a",
      isPrimary: false,
      primaryHostname: "node-b",
    });
    try {
      const replica = await runDoctor({ ...s.env, NDLS_LITEFS_API: sim.url });
      assertEquals(row(replica, "litefs").result, "PASS");
      assertIncludes(row(replica, "litefs").detail, "this node is replica of node-b");
      sim.setPrimary();
      const primary = await runDoctor({ ...s.env, NDLS_LITEFS_API: sim.url });
      assertIncludes(row(primary, "litefs").detail, "this node is primary");
      assertNoToken(replica);
      assertNoToken(primary);
    } finally {
      await sim.stop();
    }
  });
});

Deno.test("doctor warns, without failing, when the LiteFS API is unreachable", async () => {
  await withConsul(TOKEN, async (_consul, s) => {
    const run = await runDoctor(s.env);
    assertEquals(run.code, 0, run.stdout);
    const litefs = row(run, "litefs");
    assertEquals(litefs.result, "WARN");
    assertIncludes(litefs.detail, "unreachable: tcp connect error: Connection refused");
    assertNoToken(run);
  });
});

Deno.test("doctor warns about an NDLS_ variable that is no setting, naming the likely one", async () => {
  await withConsul(TOKEN, async (_consul, s) => {
    const run = await runDoctor({ ...s.env, NDLS_STOP_TIMOUT: "30s" });
    assertEquals(run.code, 0, run.stdout);
    const warned = run.rows.filter((r) => r.check === "settings" && r.result === "WARN");
    assertEquals(warned.map((r) => r.detail), [
      "NDLS_STOP_TIMOUT is not a setting and is ignored (did you mean NDLS_STOP_TIMEOUT?)",
    ]);
  });
});

Deno.test("doctor says so when it cannot look for unknown NDLS_ names", async () => {
  await withConsul(TOKEN, async (_consul, s) => {
    // No `env` to run: the check is skipped, visibly.
    const run = await runDoctor({ ...s.env, PATH: "/nonexistent", NDLS_STOP_TIMOUT: "30s" });
    const warned = run.rows.filter((r) => r.check === "settings" && r.result === "WARN");
    assertEquals(warned.map((r) => r.detail), [
      "unknown NDLS_ names not checked: `env` could not be run",
    ]);
  });
});

Deno.test("doctor fails a mount dir that does not exist", async () => {
  await withConsul(TOKEN, async (_consul, s) => {
    const run = await runDoctor({ ...s.env, NDLS_MOUNT_DIR: `${s.dir}/nowhere` });
    assertEquals(run.code, 1, run.stdout);
    assertEquals(row(run, "mount").result, "FAIL");
    assertIncludes(row(run, "mount").detail, `${s.dir}/nowhere: NotFound`);
  });
});

Deno.test("doctor warns that a plain directory is not a mount, and names .primary", async () => {
  await withConsul(TOKEN, async (_consul, s) => {
    await Deno.writeTextFile(`${s.mountDir}/.primary`, "node-b\n");
    const run = await runDoctor(s.env);
    assertEquals(run.code, 0, run.stdout);
    assertEquals(row(run, "mount").result, "WARN");
    assertIncludes(row(run, "mount").detail, "a plain directory, not a mount");
    assertIncludes(row(run, "mount").detail, ".primary names node-b (replica)");
  });
});

Deno.test("doctor passes a directory that is a mount point", async () => {
  // /proc is a mount point on every Linux machine and has no .primary.
  const r = await mountRow("/proc");
  assertEquals(r.result, "PASS", r.detail);
  assertIncludes(r.detail, "no .primary");
});

Deno.test("doctor warns about a Navidrome folder inside the LiteFS mount", async () => {
  await withConsul(TOKEN, async (_consul, s) => {
    const clean = await runDoctor({ ...s.env, ND_CACHEFOLDER: `${s.dir}/cache` });
    assertEquals(row(clean, "navidrome folders").result, "PASS");
    // Written the long way round, to prove the path is normalised before comparing.
    const run = await runDoctor({ ...s.env, ND_CACHEFOLDER: `${s.dir}/x/../mount/cache` });
    assertEquals(run.code, 0, "a warning is not a failure");
    const folders = run.rows.filter((r) => r.check === "navidrome folders");
    assertEquals(folders.map((r) => r.result), ["WARN"], run.stdout);
    assertIncludes(folders[0].detail, "ND_CACHEFOLDER");
    assertIncludes(folders[0].detail, "inside the LiteFS mount");
    assertNoToken(run);
  });
});

Deno.test("doctor interrupted mid-register still removes its throwaway service", async () => {
  // Every answer takes LATENCY_MS, so the register is surely in flight when SIGINT lands.
  await withConsul(TOKEN, async (consul, s) => {
    const proc = spawnDoctor(s.env);
    const out = proc.output();
    try {
      await consul.waitFor(
        (d) => d.calls.some((c) => c.path.startsWith("/v1/agent/service/register")),
        15_000,
        "doctor's register request",
      );
      const register = probeCalls(consul).registers[0];
      assertEquals(register.status, null, "register already answered: not in flight");
      proc.kill("SIGINT");
      const result = await out;
      const stderr = new TextDecoder().decode(result.stderr);
      const stdout = new TextDecoder().decode(result.stdout);
      assertEquals(result.code, 130, stdout + stderr);
      assertIncludes(stderr, "doctor interrupted: throwaway service");
      assertIncludes(stderr, "removed");
      const { deregisters } = probeCalls(consul);
      assertEquals(deregisters.length, 1);
      // The deregister went out only once the register was answered (a latency after it
      // arrived): sent earlier, a real agent could apply it first and keep the throwaway.
      assert(
        deregisters[0].at - register.at >= LATENCY_MS - 50,
        `deregister sent ${deregisters[0].at - register.at}ms after the register, while in flight`,
      );
      assertEquals(register.status, 200);
      await waitFor(() => consul.services().length === 0, {
        timeoutMs: 5_000,
        what: "throwaway service removed",
      });
      assertNoToken({ code: result.code, stdout, stderr, rows: [] });
    } finally {
      try {
        proc.kill("SIGKILL");
      } catch {
        // Exited already.
      }
      await out.catch(() => {});
    }
  }, LATENCY_MS);
});
