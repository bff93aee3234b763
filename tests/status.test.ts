/**
 * The optional status listener of a real supervisor process: `/status` JSON
 * and `/metrics` in Prometheus text format when NDLS_STATUS_ADDR is set, and
 * no listening socket at all when it is not.
 * @module
 */

import { assert, assertEquals, assertExcludes, assertIncludes } from "./support/assert.ts";
import { ConsulDouble } from "./support/consul_double.ts";
import { type TestNode, withNode } from "./support/harness.ts";
import { waitFor } from "./support/wait.ts";
import { VERSION } from "../lib/version.ts";

const TOKEN = "s7a7u5-70ken-5ecre7-value";

/** One sample of the Prometheus text format. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Parses Prometheus text exposition (0.0.4) strictly enough to fail on a
 * malformed line: `# HELP`/`# TYPE` comments, then `name{labels} value`.
 * Returns the samples and each metric family's declared type.
 */
function parsePrometheus(text: string): { samples: Sample[]; types: Map<string, string> } {
  assert(text.endsWith("\n"), "exposition must end with a newline");
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/
      .exec(line);
    if (type) {
      assert(!types.has(type[1]), `TYPE twice for ${type[1]}`);
      types.set(type[1], type[2]);
      continue;
    }
    if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+$/.test(line)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert(m, `malformed exposition line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const pair of (m[2] ?? "").split(",").filter((p) => p !== "")) {
      const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"$/.exec(pair);
      assert(lm, `malformed label ${JSON.stringify(pair)} in ${JSON.stringify(line)}`);
      labels[lm[1]] = lm[2];
    }
    const value = m[3] === "+Inf" ? Infinity : Number(m[3]);
    assert(!Number.isNaN(value), `not a number: ${line}`);
    const family = m[1].replace(/_(bucket|sum|count)$/, "");
    assert(types.has(m[1]) || types.has(family), `sample without a TYPE: ${line}`);
    samples.push({ name: m[1], labels, value });
  }
  return { samples, types };
}

/** The value of the one sample named `name` with exactly `labels`. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) =>
    s.name === name && JSON.stringify(s.labels) === JSON.stringify(labels)
  );
  assert(found.length === 1, `expected one ${name}${JSON.stringify(labels)}, got ${found.length}`);
  return found[0].value;
}

/** The TCP ports process `pid` listens on, from its fds and the kernel's socket tables. */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/${pid}/fd/${fd.name}`));
      if (m) inodes.add(m[1]);
    } catch {
      // The fd closed while listing.
    }
  }
  const ports: number[] = [];
  for (const table of ["tcp", "tcp6"]) {
    let text = "";
    try {
      text = Deno.readTextFileSync(`/proc/${pid}/net/${table}`);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT, st 0A is LISTEN, the inode is column 10.
      if (f.length > 9 && f[3] === "0A" && inodes.has(f[9])) {
        ports.push(parseInt(f[1].split(":")[1], 16));
      }
    }
  }
  return ports.sort((a, b) => a - b);
}

/** Waits for the supervisor to say where it listens; returns the port. */
async function statusPort(n: TestNode): Promise<number> {
  const re = /status and metrics on http:\/\/127\.0\.0\.1:(\d+)\/status/;
  await n.waitOutput(re);
  return Number(re.exec(n.output)![1]);
}

async function getStatus(port: number): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${port}/status`);
  assertEquals(res.status, 200);
  assertIncludes(res.headers.get("content-type") ?? "", "application/json");
  return await res.json();
}

async function getMetrics(port: number): Promise<{ text: string; samples: Sample[] }> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assertEquals(res.status, 200);
  assertIncludes(res.headers.get("content-type") ?? "", "text/plain; version=0.0.4");
  const text = await res.text();
  const { samples, types } = parsePrometheus(text);
  assertEquals(types.get("ndls_role"), "gauge");
  assertEquals(types.get("ndls_transitions_total"), "counter");
  assertEquals(types.get("ndls_child_restarts_total"), "counter");
  assertEquals(types.get("ndls_consul_errors_total"), "counter");
  assertEquals(types.get("ndls_reaction_seconds"), "histogram");
  // A histogram's buckets are cumulative and end at +Inf = _count.
  const buckets = samples.filter((s) => s.name === "ndls_reaction_seconds_bucket");
  const le = (s: Sample) => s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
  for (let i = 1; i < buckets.length; i++) {
    assert(buckets[i].value >= buckets[i - 1].value, "buckets not cumulative");
    assert(le(buckets[i]) > le(buckets[i - 1]), "le not ascending");
  }
  assertEquals(buckets.at(-1)!.labels.le, "+Inf");
  assertEquals(buckets.at(-1)!.value, value(samples, "ndls_reaction_seconds_count"));
  return { text, samples };
}

async function withConsul(body: (consul: ConsulDouble) => Promise<void>): Promise<void> {
  const consul = await ConsulDouble.start({
    aclTokens: { [TOKEN]: { serviceWrite: true, agentRead: true } },
  });
  try {
    await body(consul);
  } finally {
    await consul.stop();
  }
}

Deno.test("/status and /metrics report role, child, restarts, Consul state and reactions", async () => {
  await withConsul(async (consul) => {
    await withNode({
      primary: true,
      consulUrl: consul.url,
      env: {
        NDLS_STATUS_ADDR: "0",
        CONSUL_HTTP_TOKEN: TOKEN,
        NDLS_RESTART_DELAY: "100ms",
      },
    }, async (n) => {
      const port = await statusPort(n);
      // Loopback only for a bare port, and the supervisor's only listening socket.
      assertEquals(listeningPorts(n.proc.pid), [port]);
      const pid = await n.waitAppRunning();

      const status = await waitFor(async () => {
        const s = await getStatus(port);
        const c = s.consul as Record<string, { state: string }>;
        return c.primary.state === "registered" ? s : false;
      }, { timeoutMs: 10_000, what: "status showing the registration" });
      assertEquals(status.version, VERSION);
      assertEquals(status.hostname, "node-a");
      assertEquals(status.role, "primary");
      assertIncludes(String(status.reason), "primary");
      const since = Date.parse(String(status.roleSince));
      assert(Math.abs(Date.now() - since) < 60_000, `roleSince ${status.roleSince} is not now`);
      const child = status.child as Record<string, unknown>;
      assertEquals(child.pid, pid);
      assertEquals(child.running, true);
      assertEquals(typeof child.uptimeMs, "number");
      assertEquals(status.restarts, 0);
      assertEquals(status.consul, {
        primary: { state: "registered", lastError: null },
        replica: { state: "absent", lastError: null },
      });

      // An unexpected exit counts as a restart.
      Deno.kill(pid, "SIGKILL");
      await waitFor(async () => (await getStatus(port)).restarts === 1, {
        timeoutMs: 10_000,
        what: "restarts = 1",
      });
      await n.waitAppRunning();

      // Demote, then promote while the agent fails registrations: the error is
      // shown with its kind, and clears once the agent recovers.
      n.demote("node-b");
      await n.waitAppGone();
      consul.setFault({ status: 500, body: "rpc error: boom", paths: /service\/register/ });
      n.promote();
      const failing = await waitFor(async () => {
        const s = await getStatus(port);
        const c = s.consul as Record<string, { lastError: string | null }>;
        return c.primary.lastError ? s : false;
      }, { timeoutMs: 10_000, what: "a Consul error in /status" });
      assertIncludes(
        JSON.stringify(failing.consul),
        "register navidrome-node-a: 500 rpc error: boom",
      );
      const during = await getMetrics(port);
      assert(value(during.samples, "ndls_consul_errors_total", { kind: "server" }) >= 1);
      assertEquals(value(during.samples, "ndls_consul_errors_total", { kind: "denied" }), 0);
      consul.setFault(null);
      await waitFor(async () => {
        const c = (await getStatus(port)).consul as Record<string, Record<string, unknown>>;
        return c.primary.state === "registered" && c.primary.lastError === null;
      }, { timeoutMs: 10_000, what: "registration repaired" });

      const { text, samples } = await getMetrics(port);
      assertEquals(value(samples, "ndls_role", { role: "primary" }), 1);
      assertEquals(value(samples, "ndls_role", { role: "replica" }), 0);
      assertEquals(value(samples, "ndls_role", { role: "unknown" }), 0);
      assertEquals(value(samples, "ndls_child_running"), 1);
      assert(value(samples, "ndls_transitions_total", { to: "primary" }) >= 2);
      assert(value(samples, "ndls_transitions_total", { to: "replica" }) >= 1);
      assertEquals(value(samples, "ndls_child_restarts_total"), 1);
      assert(value(samples, "ndls_consul_errors_total", { kind: "server" }) >= 1);
      // Start, demotion and promotion were each a reaction.
      assert(value(samples, "ndls_reaction_seconds_count") >= 3, text);
      assert(value(samples, "ndls_reaction_seconds_bucket", { le: "+Inf" }) >= 3);
      assert(value(samples, "ndls_reaction_seconds_sum") > 0);

      const other = await fetch(`http://127.0.0.1:${port}/nope`);
      assertEquals(other.status, 404);
      await other.body?.cancel();
      const post = await fetch(`http://127.0.0.1:${port}/status`, { method: "POST" });
      assertEquals(post.status, 405);
      await post.body?.cancel();

      const statusText = JSON.stringify(await getStatus(port));
      assertExcludes(statusText, TOKEN, "token in /status");
      assertExcludes(text, TOKEN, "token in /metrics");
      assertExcludes(n.output, TOKEN, "token in the log");
    });
  });
});

Deno.test("the supervisor stops promptly while a status client holds a connection open", async () => {
  await withNode({ primary: true, env: { NDLS_STATUS_ADDR: "127.0.0.1:0" } }, async (n) => {
    const port = await statusPort(n);
    await n.waitAppRunning();
    // An idle client connection, as a scraper's keep-alive would leave.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      n.signal("SIGTERM");
      assertEquals(await n.exitCode(5_000), 0);
    } finally {
      conn.close();
    }
  });
});

Deno.test("without NDLS_STATUS_ADDR the supervisor listens on nothing", async () => {
  await withNode({ primary: true }, async (n) => {
    await n.waitAppRunning();
    await n.waitOutput("settled in");
    assertEquals(listeningPorts(n.proc.pid), []);
    assertExcludes(n.output, "status and metrics on");
  });
});

Deno.test("a taken status address is one config error naming NDLS_STATUS_ADDR: exit 78, nothing started", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    await withNode({ primary: true, env: { NDLS_STATUS_ADDR: String(port) } }, async (n) => {
      assertEquals(await n.exitCode(5_000), 78);
      assertIncludes(n.output, `config error: NDLS_STATUS_ADDR=127.0.0.1:${port}: cannot listen:`);
      assertEquals(n.appStarts(), 0);
    });
  } finally {
    taken.close();
  }
});
