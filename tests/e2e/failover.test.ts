/**
 * End-to-end acceptance: a real LiteFS cluster on one machine (one network
 * and mount namespace per node, the repository's unmodified litefs.yml), the
 * real Navidrome, the supervisor from source with the compile task's
 * permission flags, and the Consul double as every node's agent. The sampler
 * checks the invariants every 100 ms throughout each scenario; each scenario
 * prints its measured timings. Needs root, FUSE and network namespaces:
 * `deno task test:e2e`.
 * @module
 */

import { assert, assertEquals } from "../support/assert.ts";
import { waitFor } from "../support/wait.ts";
import { preflight } from "./cluster.ts";
import { NavidromeApi, TINY_PNG } from "./navidrome_api.ts";
import type { Sample } from "./observe.ts";
import { EXIT } from "../../lib/decide.ts";
import {
  COLD_START_TIMEOUT_MS,
  GRACEFUL_FAILOVER_TIMEOUT_MS,
  HARD_FAILOVER_TIMEOUT_MS,
  holderNode,
  type Observed,
  printTimings,
  servingFromOne,
  untilServing,
  withCluster,
} from "./scenarios.ts";

await preflight();

/** Navidrome's log line when its initial library scan is over. */
const NAVIDROME_SCAN_DONE = `msg="Scan completed"`;

/** LiteFS's own files next to the database on a mount. */
const LITEFS_FILES = new Set([".primary", ".lag"]);

/** Files on a node's mount, as the node sees them. */
async function mountListing(o: Observed, node: string): Promise<string[]> {
  const pid = o.cluster.node(node).pid;
  assert(pid !== null, `${node} is down`);
  const names: string[] = [];
  for await (const e of Deno.readDir(`/proc/${pid}/root/data`)) names.push(e.name);
  return names.sort();
}

Deno.test("cold start: one Navidrome, on the primary, registered alone; the database replicates", async () => {
  await withCluster(3, async (o) => {
    const start = o.cluster.startedAt;
    const lease = await o.sampler.until((s) => s.holder !== null, {
      timeoutMs: COLD_START_TIMEOUT_MS,
      what: "a lease holder",
    });
    const serving = await untilServing(o, { timeoutMs: COLD_START_TIMEOUT_MS });
    const primary = holderNode(o, serving);
    assertEquals(serving.passingAddress[primary.name], `${primary.ip}:4533`);

    // navidrome.db is on the primary's mount, alone but for LiteFS's files and its WAL.
    const files = (await mountListing(o, primary.name)).filter((f) => !LITEFS_FILES.has(f));
    assert(files.includes("navidrome.db"), `primary's /data holds ${files.join(", ")}`);
    assertEquals(files.filter((f) => !f.startsWith("navidrome.db")), []);
    const replicas = o.cluster.nodes.filter((n) => n !== primary);
    const replicated = await waitFor(async () => {
      for (const r of replicas) {
        const head = await r.readFile("/data/navidrome.db");
        // A replica's copy is a real SQLite database, not an empty name.
        if (!head || !new TextDecoder().decode(head.slice(0, 15)).startsWith("SQLite format 3")) {
          return false;
        }
      }
      return Date.now();
    }, { timeoutMs: 30_000, intervalMs: 100, what: "navidrome.db on every replica" });
    for (const r of replicas) {
      const dotPrimary = await r.readFile("/data/.primary");
      assertEquals(new TextDecoder().decode(dotPrimary ?? new Uint8Array()).trim(), primary.name);
    }
    const first = (pred: (s: Sample) => boolean) => o.sampler.samples.find(pred)?.at ?? NaN;
    printTimings(`cold start of 3 nodes (primary ${primary.name})`, start, [
      ["lease taken", lease.at],
      ["Navidrome spawned", first((s) => s.nodes[primary.name].navidrome.length > 0)],
      ["Navidrome answers /ping", first((s) => s.nodes[primary.name].ping === true)],
      ["registered in Consul", first((s) => s.registered.includes(primary.name))],
      ["Navidrome answers /ping, sole passing instance", serving.at],
      ["navidrome.db on every replica", replicated],
    ]);
  });
});

Deno.test("graceful failover: SIGTERM to the primary's LiteFS moves Navidrome and the registration", async () => {
  await withCluster(3, async (o) => {
    const before = await untilServing(o, { timeoutMs: COLD_START_TIMEOUT_MS });
    const old = holderNode(o, before);
    // Steady state: Navidrome's initial scan starts after an uninterruptible
    // 2 s sleep, and a SIGTERM before it ends waits for it.
    await waitFor(() => old.lines.some((l) => l.includes(NAVIDROME_SCAN_DONE)), {
      timeoutMs: COLD_START_TIMEOUT_MS,
      intervalMs: 50,
      what: `Navidrome's initial scan on ${old.name}`,
    });
    const t0 = Date.now();
    old.signal("SIGTERM");
    const wait = (what: string, pred: (s: Sample) => boolean) =>
      o.sampler.until(pred, { after: t0, timeoutMs: GRACEFUL_FAILOVER_TIMEOUT_MS, what });
    const deregistered = await wait(
      "old registration gone",
      (s) => !s.registered.includes(old.name),
    );
    const stopped = await wait(
      "old Navidrome gone",
      (s) => s.nodes[old.name].navidrome.length === 0,
    );
    const released = await wait("lease released", (s) => s.holder !== old.name);
    const taken = await wait(
      "lease taken elsewhere",
      (s) => s.holder !== null && s.holder !== old.name,
    );
    const after = await untilServing(o, {
      after: t0,
      not: old.name,
      timeoutMs: GRACEFUL_FAILOVER_TIMEOUT_MS,
    });
    const exit = await old.exited(GRACEFUL_FAILOVER_TIMEOUT_MS);
    assertEquals(exit.code, 0, "LiteFS exits with the supervisor's clean-stop code");
    assertEquals(holderNode(o, after).name, after.holder);
    printTimings(`graceful failover ${old.name} -> ${after.holder}`, t0, [
      ["old registration gone", deregistered.at],
      ["old Navidrome gone", stopped.at],
      ["lease released", released.at],
      ["lease taken by another node", taken.at],
      ["new Navidrome answers /ping, sole passing instance", after.at],
    ]);
  });
});

Deno.test("hard failover: a SIGKILLed primary is replaced after the lease TTL", async () => {
  await withCluster(3, async (o) => {
    const before = await untilServing(o, { timeoutMs: COLD_START_TIMEOUT_MS });
    const dead = holderNode(o, before);
    const t0 = Date.now();
    await dead.crash();
    const wait = (what: string, pred: (s: Sample) => boolean) =>
      o.sampler.until(pred, { after: t0, timeoutMs: HARD_FAILOVER_TIMEOUT_MS, what });
    const unpassing = await wait(
      "dead node out of the passing set",
      (s) => !s.passing.includes(dead.name),
    );
    const taken = await wait(
      "lease taken elsewhere",
      (s) => s.holder !== null && s.holder !== dead.name,
    );
    const after = await untilServing(o, {
      after: t0,
      not: dead.name,
      timeoutMs: HARD_FAILOVER_TIMEOUT_MS,
    });
    // The dead node's registration stays in its agent but never passes again.
    assert(!after.passing.includes(dead.name));
    printTimings(`hard failover: ${dead.name} killed -> ${after.holder}`, t0, [
      ["dead node's instance leaves the passing set", unpassing.at],
      ["lease taken by another node", taken.at],
      ["new Navidrome answers /ping, sole passing instance", after.at],
    ]);
  });
});

/**
 * How long a cut-off replica is watched: several LiteFS reconnect attempts
 * (1 s apart) and supervisor .primary polls and /info checks (5 s) fit in it.
 */
const CUT_OFF_WATCH_MS = 12_000;

Deno.test("a replica cut off from the primary never starts Navidrome", async () => {
  await withCluster(3, async (o) => {
    const before = await untilServing(o, { timeoutMs: COLD_START_TIMEOUT_MS });
    const primary = holderNode(o, before);
    const replica = o.cluster.nodes.find((n) => n !== primary)!;
    await o.sampler.until((s) => s.nodes[replica.name].dotPrimary === primary.name, {
      timeoutMs: 30_000,
      what: `${replica.name} connected to ${primary.name}`,
    });
    const t0 = Date.now();
    await replica.partitionFrom(primary);
    const vanished = await o.sampler.until((s) => s.nodes[replica.name].dotPrimary === null, {
      after: t0,
      timeoutMs: 15_000,
      what: `.primary gone on ${replica.name}`,
    });
    await o.sampler.until((s) => s.at >= vanished.at + CUT_OFF_WATCH_MS, {
      timeoutMs: CUT_OFF_WATCH_MS + 5_000,
      what: "the watch window",
    });
    const window = o.sampler.between(t0);
    const absentSamples = window.filter((s) => s.nodes[replica.name].dotPrimary === null).length;
    assert(absentSamples > 0);
    for (const s of window) {
      assertEquals(s.nodes[replica.name].navidrome, [], `Navidrome on ${replica.name}`);
      assert(!s.registered.includes(replica.name), `${replica.name} registered`);
      assert(s.nodes[replica.name].info?.isPrimary !== true, `${replica.name} says primary`);
    }
    // The lease never moved: the cut-off replica is not a reason to fail over.
    assert(window.every((s) => s.holder === primary.name));
    const t1 = Date.now();
    await replica.healPartition(primary);
    const back = await o.sampler.until((s) => s.nodes[replica.name].dotPrimary === primary.name, {
      after: t1,
      timeoutMs: 30_000,
      what: `${replica.name} reconnected`,
    });
    printTimings(`${replica.name} cut off from ${primary.name}`, t0, [
      [".primary vanished on the replica", vanished.at],
      [`watched ${absentSamples} samples without .primary: no Navidrome`, window.at(-1)!.at],
      ["healed: .primary back", back.at],
    ]);
  });
});

/**
 * Holds TCP port `port` in a node's network namespace as soon as it is free,
 * so every Navidrome started there fails with "address already in use".
 * Killed with the node's namespace.
 */
function squatPort(netns: string, port: number): Deno.ChildProcess {
  // The interval keeps Deno alive: a listener that never accepts is no pending op.
  const code = `for (;;) { try { Deno.listen({ port: ${port} }); break; } ` +
    `catch { await new Promise((r) => setTimeout(r, 5)); } } setInterval(() => {}, 60_000);`;
  return new Deno.Command("ip", {
    args: ["netns", "exec", netns, Deno.execPath(), "eval", code],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/** The supervisor's give-up budget under job.nomad's defaults: 1+2+4+8 s of backoff, and starts. */
const CRASH_LOOP_TIMEOUT_MS = 60_000;

Deno.test("a crash-looping Navidrome makes the primary give up, and another node serves", async () => {
  await withCluster(3, async (o) => {
    const before = await untilServing(o, { timeoutMs: COLD_START_TIMEOUT_MS });
    const sick = holderNode(o, before);
    const squatter = squatPort(sick.netns, 4533);
    const t0 = Date.now();
    for (const pid of before.nodes[sick.name].navidrome) Deno.kill(pid, "SIGKILL");
    const exit = await sick.exited(CRASH_LOOP_TIMEOUT_MS);
    const gaveUp = Date.now();
    assertEquals(exit.code, EXIT.crashLoop, "LiteFS exits with the supervisor's give-up code");
    const restarts = sick.lines.filter((l) => l.includes("exited unexpectedly")).length;
    assertEquals(restarts, 4, "four restarts, then the fifth failure gives up");
    const after = await untilServing(o, {
      after: t0,
      not: sick.name,
      timeoutMs: GRACEFUL_FAILOVER_TIMEOUT_MS,
    });
    squatter.kill("SIGKILL");
    await squatter.status;
    printTimings(`crash loop on ${sick.name} -> ${after.holder}`, t0, [
      ["supervisor gave up, LiteFS exited (code 75)", gaveUp],
      ["new Navidrome answers /ping, sole passing instance", after.at],
    ]);
  });
});

/** The supervisor's first log line (lib/supervisor.ts), proof that LiteFS ran its exec. */
const SUPERVISOR_STARTED = "supervisor: supervisor ";

/** Longest run of consecutive samples in which nobody served, in ms. */
function longestGap(samples: Sample[]): { longest: number; total: number } {
  let longest = 0;
  let total = 0;
  let since: number | null = null;
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i];
    if (servingFromOne(s) === null) {
      since ??= s.at;
    } else if (since !== null) {
      longest = Math.max(longest, s.at - since);
      total += s.at - since;
      since = null;
    }
  }
  return { longest, total };
}

Deno.test("rolling restart of every node: never two Navidromes, service gaps measured", async () => {
  await withCluster(3, async (o) => {
    await untilServing(o, { timeoutMs: COLD_START_TIMEOUT_MS });
    const t0 = Date.now();
    const steps: [string, number][] = [];
    for (const node of o.cluster.nodes) {
      const wasPrimary = o.cluster.leaseHolder() === node.name;
      node.signal("SIGTERM");
      assertEquals((await node.exited(GRACEFUL_FAILOVER_TIMEOUT_MS)).code, 0);
      steps.push([`${node.name}${wasPrimary ? " (primary)" : ""} stopped`, Date.now()]);
      const booted = Date.now();
      const seen = node.lines.length;
      await node.boot();
      // Back means: its supervisor runs again, and the node is primary or a connected replica.
      await waitFor(() => node.lines.slice(seen).some((l) => l.includes(SUPERVISOR_STARTED)), {
        timeoutMs: COLD_START_TIMEOUT_MS,
        intervalMs: 50,
        what: `${node.name}'s supervisor after the restart`,
      });
      const serving = await o.sampler.until(
        (s) => {
          const h = servingFromOne(s);
          return h !== null && (h === node.name || s.nodes[node.name].dotPrimary === h);
        },
        {
          after: booted,
          timeoutMs: COLD_START_TIMEOUT_MS,
          what: `${node.name} back in the cluster`,
        },
      );
      steps.push([`${node.name} back; ${serving.holder} serving`, serving.at]);
    }
    const gaps = longestGap(o.sampler.between(t0));
    printTimings("rolling restart of 3 nodes", t0, steps);
    console.log(
      `    longest gap in service ${gaps.longest} ms, total ${gaps.total} ms ` +
        `over ${Date.now() - t0} ms`,
    );
  });
});

Deno.test("what the primary wrote survives a failover: user, playlist and uploaded artwork", async () => {
  await withCluster(3, async (o) => {
    const before = await untilServing(o, { timeoutMs: COLD_START_TIMEOUT_MS });
    const first = holderNode(o, before);
    const api = new NavidromeApi(`http://${first.ip}:4533`);
    await api.createAdmin("admin", "e2e-password");
    const playlist = await api.createPlaylist("failover mix");
    const upload = await api.uploadPlaylistImage(playlist, TINY_PNG);
    assert(upload.status >= 200 && upload.status < 300, `upload: ${upload.status} ${upload.body}`);
    // The image went to the data folder on shared storage, never onto the mount.
    const artwork = await waitFor(async () => {
      const found: string[] = [];
      const walk = async (dir: string) => {
        for await (const e of Deno.readDir(dir)) {
          if (e.isDirectory) await walk(`${dir}/${e.name}`);
          else found.push(e.name);
        }
      };
      await walk(`/proc/${first.pid}/root/shared_data/artwork`);
      return found.length > 0 ? found : null;
    }, {
      timeoutMs: 5_000,
      intervalMs: 100,
      what: "the uploaded image under /shared_data/artwork",
    });
    const onMount = (await mountListing(o, first.name)).filter((f) => !LITEFS_FILES.has(f));
    assertEquals(onMount.filter((f) => !f.startsWith("navidrome.db")), []);

    await waitFor(() => first.lines.some((l) => l.includes(NAVIDROME_SCAN_DONE)), {
      timeoutMs: COLD_START_TIMEOUT_MS,
      intervalMs: 50,
      what: `Navidrome's initial scan on ${first.name}`,
    });
    const t0 = Date.now();
    first.signal("SIGTERM");
    const after = await untilServing(o, {
      after: t0,
      not: first.name,
      timeoutMs: GRACEFUL_FAILOVER_TIMEOUT_MS,
    });
    const next = new NavidromeApi(`http://${holderNode(o, after).ip}:4533`);
    const login = await next.login("admin", "e2e-password");
    assertEquals(login.status, 200, `login on the new primary: ${login.body}`);
    assertEquals((await next.playlist(playlist)).name, "failover mix");
    printTimings(`data written on ${first.name}, read on ${after.holder}`, t0, [
      [`artwork ${artwork.join(", ")} on shared storage; failover done`, after.at],
    ]);
  });
});
