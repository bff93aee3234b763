/**
 * `deno task demo` run headless, as a script would: leadership moves, at most
 * one app runs at any printed moment (and at any sampled moment), and nothing
 * is left behind: no process, no port, no temporary directory.
 * @module
 */

import { assert, assertEquals, assertIncludes } from "./support/assert.ts";
import { processAlive, processesWithEnvironment, waitFor } from "./support/wait.ts";
import { DemoUsageError, parseDemoArgs } from "../dev/demo_args.ts";
import { renderTable, snapshotLine } from "../dev/demo_view.ts";

const DEMO_TS = new URL("../dev/demo.ts", import.meta.url).pathname;
const STAND_IN = "stand_in_app.ts";

function demoCommand(args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", DEMO_TS, ...args],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/**
 * Live stand-in apps started under `root` (their environment names the node's
 * litefs.yml). A supervisor's command line names the stand-in too, after `--`,
 * so only a process whose script argument is the stand-in counts.
 */
function liveAppsUnder(root: string): number[] {
  return processesWithEnvironment(root).filter((pid) => {
    try {
      const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
      return !argv.includes("--") && argv.some((a) => a.endsWith(STAND_IN));
    } catch {
      return false;
    }
  });
}

async function portClosed(port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return false;
  } catch {
    return true;
  }
}

Deno.test("the demo moves leadership, never runs two apps, and leaves nothing behind", async () => {
  const proc = demoCommand(["--duration", "6", "--interval", "1.2", "--stand-in"]).spawn();
  let stdout = "";
  const pump = proc.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (c) => void (stdout += c) }),
  );
  const stderrP = new Response(proc.stderr).text();
  let root: string | null = null;
  let maxApps = 0;
  let samples = 0;
  const exit: { status: Deno.CommandStatus | null } = { status: null };
  proc.status.then((s) => (exit.status = s));
  try {
    // Independently of what the demo prints, sample the real processes.
    root = await waitFor(() => /temp dir (\S+)/.exec(stdout)?.[1], {
      timeoutMs: 30_000,
      what: `the demo's temp dir (output: ${stdout})`,
    });
    while (exit.status === null) {
      maxApps = Math.max(maxApps, liveAppsUnder(root).length);
      samples++;
      await new Promise((r) => setTimeout(r, 25));
    }
  } finally {
    if (exit.status === null) proc.kill("SIGKILL");
    await proc.status;
    await pump;
  }
  const status = exit.status!;
  const stderr = await stderrP;
  const out = stdout;
  assertEquals(status.code, 0, `demo failed:\n${out}\n${stderr}`);
  assert(samples > 20, `only ${samples} samples taken`);
  // Exactly one: zero would mean the sampler saw nothing and proved nothing.
  assertEquals(maxApps, 1, `${maxApps} apps were alive at once`);

  // Transitions happened, each with a measured reaction.
  const takes = [...out.matchAll(/leadership: (node-\d) takes the lease/g)].map((m) => m[1]);
  assert(takes.length >= 2, `expected at least 2 handovers:\n${out}`);
  const starts = [...out.matchAll(/(node-\d): started app, pid (\d+), (\d+)ms after/g)];
  const stops = [...out.matchAll(/(node-\d): stopping app, pid (\d+), (\d+)ms after/g)];
  assert(starts.length >= 2 && stops.length >= 2, `reactions missing:\n${out}`);
  assertIncludes(out, "role replica -> primary");
  assertIncludes(out, "role primary -> replica");

  // At every printed moment at most one app ran, and the app moved between nodes.
  const snapshots = out.split("\n").filter((l) => /^\[\s*[\d.]+s\] /.test(l));
  assert(snapshots.length >= 4, `too few snapshots:\n${out}`);
  const nodesWithApp = new Set<string>();
  for (const line of snapshots) {
    const running = line.slice(line.indexOf("]") + 2).split(" | ").filter((part) => {
      const m = /^(node-\d) role=(\S+) pid=(\S+) consul=(\S+)$/.exec(part);
      assert(m, `unparsable snapshot part ${JSON.stringify(part)}`);
      // A passing registration is only ever shown beside the primary role.
      assert(m[4] !== "passing" || m[2] === "primary", `passing beside ${m[2]}: ${line}`);
      if (m[3] !== "-") nodesWithApp.add(m[1]);
      return m[3] !== "-";
    });
    assert(running.length <= 1, `two apps at one printed moment: ${line}`);
  }
  assert(nodesWithApp.size >= 2, `the app never moved: ${[...nodesWithApp]}`);
  assert(!out.includes("!!"), `the demo reported a problem:\n${out}`);

  // Nothing left behind: the demo says so, and the test checks for itself.
  assertIncludes(out, "left behind: nothing");
  assertIncludes(out, "consul: 0 service(s) registered at the end");
  for (const name of ["node-1", "node-2", "node-3"]) {
    assertIncludes(out, `${name}: supervisor stopped cleanly (exit 0)`);
  }
  const pids = [
    ...[...out.matchAll(/supervisor pid (\d+)/g)].map((m) => Number(m[1])),
    ...[...starts].map((m) => Number(m[2])),
  ];
  assert(pids.length >= 5);
  for (const pid of pids) assert(!processAlive(pid), `process ${pid} still alive`);
  assertEquals(processesWithEnvironment(root!), [], "processes from the demo still alive");
  const ports = [
    ...[...out.matchAll(/http:\/\/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1])),
    ...[...out.matchAll(/app port (\d+)/g)].map((m) => Number(m[1])),
  ];
  // Consul double, 3 LiteFS APIs, 3 status listeners, 3 apps.
  assert(new Set(ports).size >= 10, `expected 10 ports in the output, got ${ports}`);
  for (const port of ports) assert(await portClosed(port), `port ${port} still open`);
  let rootGone = false;
  try {
    await Deno.stat(root!);
  } catch (e) {
    rootGone = e instanceof Deno.errors.NotFound;
  }
  assert(rootGone, `${root} still exists`);
  // Plain output: no cursor movement or colour for a pipe.
  assert(!out.includes("\x1b"), "ANSI escape in non-TTY output");
});

Deno.test("the demo stops cleanly on SIGINT before its duration", async () => {
  const proc = demoCommand(["--interval", "1", "--stand-in"]).spawn();
  let stdout = "";
  const pump = proc.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (c) => void (stdout += c) }),
  );
  const stderrP = new Response(proc.stderr).text();
  try {
    await waitFor(() => /node-\d: started app/.test(stdout), {
      timeoutMs: 30_000,
      what: `an app running (output: ${stdout})`,
    });
    proc.kill("SIGINT");
    const status = await proc.status;
    await pump;
    assertEquals(status.code, 0, `${stdout}\n${await stderrP}`);
    assertIncludes(stdout, "stopping (SIGINT)");
    assertIncludes(stdout, "left behind: nothing");
    const root = /temp dir (\S+)/.exec(stdout)![1];
    assertEquals(processesWithEnvironment(root), []);
  } finally {
    try {
      proc.kill("SIGKILL");
    } catch {
      // Exited.
    }
    await proc.status;
    await stderrP;
  }
});

Deno.test("the demo rejects a bad flag with one line and exit code 2", async () => {
  for (
    const [args, expect] of [
      [["--bogus"], `unknown argument "--bogus"`],
      [["--interval", "soon"], `--interval "soon"`],
      [["--duration"], "--duration needs a value"],
      [["--navidrome", "/no/such/navidrome"], "--navidrome"],
    ] as const
  ) {
    const out = await demoCommand([...args]).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 2, `${args.join(" ")}: ${stderr}`);
    assertEquals(stderr.trimEnd().split("\n").length, 1, `not one line: ${stderr}`);
    assertIncludes(stderr, expect);
    assertEquals(new TextDecoder().decode(out.stdout), "", "printed more than the error");
  }
});

Deno.test("demo flags take seconds or durations", () => {
  assertEquals(parseDemoArgs([]).intervalMs, 5000);
  assertEquals(parseDemoArgs(["--interval", "1.5"]).intervalMs, 1500);
  assertEquals(parseDemoArgs(["--interval=750ms"]).intervalMs, 750);
  assertEquals(parseDemoArgs(["--duration", "1m"]).durationMs, 60_000);
  assertEquals(parseDemoArgs(["--navidrome", "/x/navidrome"]).navidrome, "/x/navidrome");
  for (
    const bad of [["--interval", "10ms"], ["--duration", "0"], ["--stand-in", "--navidrome=x"]]
  ) {
    let threw = false;
    try {
      parseDemoArgs(bad);
    } catch (e) {
      threw = e instanceof DemoUsageError;
    }
    assert(threw, `accepted ${bad.join(" ")}`);
  }
});

Deno.test("the demo's table and snapshot line show every column", () => {
  const rows = [
    {
      node: "node-1",
      role: "primary",
      appPid: 4242,
      consul: "passing",
      lastTransition: Date.UTC(2025, 0, 1, 12, 0, 0, 5),
      reaction: "start 7ms",
    },
    {
      node: "node-2",
      role: "replica",
      appPid: null,
      consul: "absent",
      lastTransition: null,
      reaction: null,
    },
  ];
  const table = renderTable(rows);
  assertEquals(table[0].split(/\s{2,}/), [
    "NODE",
    "ROLE",
    "APP PID",
    "CONSUL",
    "LAST TRANSITION",
    "REACTION",
  ]);
  assertIncludes(table[1], "4242");
  assertIncludes(table[1], "start 7ms");
  assert(/\d\d:\d\d:\d\d\.005/.test(table[1]), table[1]);
  assertEquals(
    snapshotLine(3210, rows),
    "[   3.2s] node-1 role=primary pid=4242 consul=passing | node-2 role=replica pid=- consul=absent",
  );
});
