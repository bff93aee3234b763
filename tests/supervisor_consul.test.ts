import { assert, assertEquals, assertExcludes, assertIncludes } from "./support/assert.ts";
import { ConsulDouble } from "./support/consul_double.ts";
import {
  InvariantMonitor,
  type TestNode,
  type TestNodeOptions,
  withNode,
} from "./support/harness.ts";
import { waitFor } from "./support/wait.ts";

const TOKEN = "0d6c1c6b-secret-token-4f1e";
const SERVICE_ID = "navidrome-node-a";

/** Runs `body` with a Consul double (ACLs on, TOKEN may write) and a node using it. */
async function withConsul(
  opts: TestNodeOptions & { consulOpts?: Parameters<typeof ConsulDouble.start>[0] },
  body: (n: TestNode, consul: ConsulDouble) => Promise<void>,
): Promise<void> {
  const consul = await ConsulDouble.start({
    aclTokens: { [TOKEN]: { serviceWrite: true, agentRead: true } },
    minCheckIntervalMs: 100,
    ...opts.consulOpts,
  });
  try {
    await withNode({
      ...opts,
      consulUrl: consul.url,
      env: {
        CONSUL_HTTP_TOKEN: TOKEN,
        NDLS_CHECK_INTERVAL: "1s",
        NDLS_CONSUL_TIMEOUT: "500ms",
        ...opts.env,
      },
    }, (n) => body(n, consul));
  } finally {
    await consul.stop();
  }
}

const registered = (c: ConsulDouble) => c.services().some((s) => s.ID === SERVICE_ID);
const calls = (c: ConsulDouble, re: RegExp) =>
  c.calls.filter((x) => re.test(`${x.method} ${x.path}`));

Deno.test("registers the primary with an HTTP and a TTL check, and it becomes passing", async () => {
  await withConsul({ primary: true }, async (n, consul) => {
    await n.waitAppRunning();
    await waitFor(() => consul.passingInstances("navidrome").length === 1, {
      timeoutMs: 10_000,
      what: `a passing instance (${n.tail()})`,
    });
    const [svc] = consul.passingInstances("navidrome");
    assertEquals(svc.ID, SERVICE_ID);
    assertEquals(svc.Port, n.appPort);
    assert(svc.Tags.includes("primary"));
    assertEquals(svc.Meta.litefs_hostname, "node-a");
    const checks = consul.checks().filter((c) => c.ServiceID === SERVICE_ID);
    assertEquals(checks.map((c) => c.CheckID).sort(), [`${SERVICE_ID}:http`, `${SERVICE_ID}:ttl`]);
    assert(consul.calls.every((c) => c.token === TOKEN), "every call carries the token");
  });
});

Deno.test("starts the app before registering it", async () => {
  await withConsul({ primary: true, env: { NDLS_LOG_FORMAT: "json" } }, async (n, consul) => {
    await n.waitAppRunning();
    const reg = await waitFor(() => calls(consul, /^PUT \/v1\/agent\/service\/register/)[0], {
      timeoutMs: 5_000,
      what: "register call",
    });
    const spawned = n.output.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
      .find((r) => String(r.message).startsWith("started Navidrome"));
    assert(spawned, "a JSON log line for the spawn");
    const spawnedAt = Date.parse(spawned["@timestamp"]);
    assert(reg.at >= spawnedAt, `register at ${reg.at} before the spawn at ${spawnedAt}`);
  });
});

Deno.test("demotes before stopping the child", async () => {
  await withConsul({ primary: true }, async (n, consul) => {
    await n.waitAppRunning();
    await waitFor(() => registered(consul), { timeoutMs: 5_000, what: "registered" });
    n.demote("node-b");
    await n.waitAppGone();
    const dereg = calls(consul, /^PUT \/v1\/agent\/service\/deregister\/navidrome-node-a$/).at(-1)!;
    const term = n.appEvents().find((e) => e.event === "term")!;
    assert(dereg.status === 200, "deregister succeeded");
    assert(dereg.at <= term.at, `deregister at ${dereg.at}, SIGTERM seen at ${term.at}`);
    assert(!registered(consul));
  });
});

Deno.test("shutdown deregisters, stops the app and exits 0", async () => {
  await withConsul({ primary: true }, async (n, consul) => {
    await n.waitAppRunning();
    await waitFor(() => registered(consul), { timeoutMs: 5_000, what: "registered" });
    n.signal("SIGTERM");
    assertEquals(await n.exitCode(), 0);
    assert(!registered(consul), "deregistered");
    assertEquals(n.liveApps(), []);
    const dereg = calls(consul, /deregister\/navidrome-node-a$/).at(-1)!;
    const term = n.appEvents().find((e) => e.event === "term")!;
    assert(dereg.at <= term.at, "deregistered before the app was signalled");
    // Invariant: nothing registers again after the successful deregistration.
    assertEquals(calls(consul, /register\?/).filter((c) => c.at > dereg.at), []);
  });
});

Deno.test("removes its own stale registration at start-up when not primary", async () => {
  const consul = await ConsulDouble.start();
  try {
    // A previous run that was SIGKILLed left its registration behind.
    const res = await fetch(`${consul.url}/v1/agent/service/register`, {
      method: "PUT",
      body: JSON.stringify({ ID: SERVICE_ID, Name: "navidrome", Port: 4533 }),
    });
    await res.body?.cancel();
    assert(registered(consul));
    await withNode({ primary: false, consulUrl: consul.url }, async () => {
      await waitFor(() => !registered(consul), { timeoutMs: 5_000, what: "stale entry removed" });
    });
  } finally {
    await consul.stop();
  }
});

Deno.test("Consul down at start does not delay the app, and it registers once Consul is back", async () => {
  await withConsul({ primary: true }, async (n, consul) => {
    await consul.stop();
    await n.waitAppRunning();
    await n.waitOutput("Consul register navidrome-node-a:");
    await consul.restart();
    await waitFor(() => registered(consul), {
      timeoutMs: 10_000,
      what: `registered (${n.tail()})`,
    });
    await n.waitOutput("succeeded again");
  });
});

Deno.test("a 500 from the agent is retried until it succeeds", async () => {
  await withConsul({ primary: true }, async (n, consul) => {
    consul.setFault({ status: 500, body: "rpc error: no leader", paths: /service\/register/ });
    await n.waitAppRunning();
    await n.waitOutput("Consul register navidrome-node-a: 500 rpc error: no leader");
    consul.setFault(null);
    await waitFor(() => registered(consul), { timeoutMs: 10_000, what: "registered" });
    assert(calls(consul, /register\?/).length >= 2);
  });
});

Deno.test("a 403 is logged once with the agent's words and never stops the app", async () => {
  await withConsul(
    { primary: true, env: { CONSUL_HTTP_TOKEN: "not-a-known-token" } },
    async (n, consul) => {
      await n.waitAppRunning();
      await n.waitOutput("403 ACL not found");
      const pid = n.liveApps()[0];
      n.demote("node-b");
      await n.waitAppGone();
      n.promote();
      await n.waitAppRunning();
      assertEquals(n.output.split("403 ACL not found").length - 1 <= 3, true);
      assert(!registered(consul));
      assert(pid > 0);
    },
  );
});

Deno.test("a Consul slower than the timeout neither delays the start nor blocks the stop", async () => {
  await withConsul({ primary: false, consulOpts: { latencyMs: 3_000 } }, async (n) => {
    const t0 = Date.now();
    n.promote();
    await n.waitAppRunning(3_000);
    const started = Date.now() - t0;
    await n.waitOutput("no answer within 500ms");
    const t1 = Date.now();
    n.demote("node-b");
    await n.waitAppGone(3_000);
    const stopped = Date.now() - t1;
    console.log(`start ${started}ms, stop with a hung agent ${stopped}ms`);
    // The deregister-first wait is bounded by DEREGISTER_BUDGET_MS (1 s).
    assert(stopped < 2_500, `stop took ${stopped}ms`);
  });
});

Deno.test("re-registers when the agent forgets the service", async () => {
  await withConsul(
    { primary: true, env: { NDLS_CONSUL_SYNC_INTERVAL: "200ms" } },
    async (n, consul) => {
      await n.waitAppRunning();
      await waitFor(() => registered(consul), { timeoutMs: 5_000, what: "registered" });
      const before = calls(consul, /register\?/).length;
      consul.forget(SERVICE_ID);
      await waitFor(() => registered(consul) && calls(consul, /register\?/).length > before, {
        timeoutMs: 5_000,
        what: "re-registered",
      });
      assertIncludes(n.output, "registering again");
    },
  );
});

Deno.test("re-registers after an agent restart that lost its state", async () => {
  await withConsul(
    { primary: true, env: { NDLS_CONSUL_SYNC_INTERVAL: "200ms" } },
    async (n, consul) => {
      await waitFor(() => registered(consul), { timeoutMs: 10_000, what: "registered" });
      await consul.stop();
      consul.forget(SERVICE_ID);
      await n.waitOutput("Consul");
      await consul.restart();
      await waitFor(() => registered(consul), {
        timeoutMs: 10_000,
        what: `re-registered (${n.tail()})`,
      });
    },
  );
});

Deno.test("keeps the TTL check passing while primary", async () => {
  await withConsul({ primary: true, env: { NDLS_CHECK_TTL: "1s" } }, async (n, consul) => {
    await n.waitAppRunning();
    await waitFor(() => calls(consul, /check\/pass\/navidrome-node-a%3Attl/).length >= 3, {
      timeoutMs: 5_000,
      what: "three TTL passes",
    });
    const ttl = consul.checks().find((c) => c.CheckID === `${SERVICE_ID}:ttl`)!;
    assertEquals(ttl.Status, "passing");
  });
});

Deno.test("the token never appears in any output", async () => {
  await withConsul({ primary: true }, async (n, consul) => {
    await n.waitAppRunning();
    await waitFor(() => registered(consul), { timeoutMs: 5_000, what: "registered" });
    consul.setFault({ status: 403, body: `Permission denied: token ${TOKEN} lacks permission` });
    await n.waitOutput("Permission denied");
    n.signal("SIGTERM");
    await n.exitCode();
    assertExcludes(n.output, TOKEN);
    assertIncludes(n.output, "[redacted]");
  });
});

Deno.test("two nodes: exactly one passing instance, always the primary's", async () => {
  const consul = await ConsulDouble.start({ minCheckIntervalMs: 100 });
  try {
    const env = { NDLS_CHECK_INTERVAL: "1s" };
    await withNode({ hostname: "node-a", primary: true, consulUrl: consul.url, env }, async (a) => {
      await withNode(
        { hostname: "node-b", primary: false, consulUrl: consul.url, env },
        async (b) => {
          const mon = new InvariantMonitor([a, b]);
          a.demote("node-b");
          b.demote("node-a");
          b.promote();
          await waitFor(() => {
            const p = consul.passingInstances("navidrome");
            return p.length === 1 && p[0].ID === "navidrome-node-b";
          }, { timeoutMs: 10_000, what: "node-b passing alone" });
          assertEquals(a.liveApps(), []);
          assertEquals(mon.stop(), []);
        },
      );
    });
  } finally {
    await consul.stop();
  }
});

Deno.test("replicas register under the replica name only, and never under the primary's", async () => {
  const env = { NDLS_REPLICA_SERVICE_NAME: "navidrome-replica" };
  await withConsul({ primary: false, env }, async (n, consul) => {
    n.demote("node-b");
    await waitFor(() => consul.services().some((s) => s.ID === "navidrome-node-a-replica"), {
      timeoutMs: 5_000,
      what: "replica registration",
    });
    assertEquals(consul.services().filter((s) => s.Service === "navidrome"), []);
    n.promote();
    await waitFor(
      () => registered(consul) && !consul.services().some((s) => s.ID.endsWith("-replica")),
      { timeoutMs: 5_000, what: "primary registered, replica entry gone" },
    );
  });
});

Deno.test("a malformed service answer from the agent is a failed request, never a crash", async () => {
  const env = { NDLS_CONSUL_SYNC_INTERVAL: "200ms" };
  await withConsul({ primary: true, env }, async (n, consul) => {
    const pid = await n.waitAppRunning();
    await waitFor(() => registered(consul), { timeoutMs: 5_000, what: "registered" });
    consul.setFault({
      status: 200,
      body: `{"ID":"${SERVICE_ID}","Service":"navidrome","Port":1,"Tags":5}`,
      paths: new RegExp(`^/v1/agent/service/${SERVICE_ID}$`),
    });
    await n.waitOutput("unparsable answer: Tags is not a list of strings");
    consul.setFault(null);
    await n.waitOutput(`Consul sync ${SERVICE_ID} succeeded again`);
    assertEquals(n.status, null, "the supervisor still runs");
    assertEquals(n.liveApps(), [pid], "the app was never touched");
  });
});

Deno.test("the token never reaches Navidrome's environment", async () => {
  await withConsul({ primary: true }, async (n) => {
    const pid = await n.waitAppRunning();
    const environ = Deno.readTextFileSync(`/proc/${pid}/environ`).split("\0");
    assertExcludes(environ.join("\n"), TOKEN);
    assert(environ.includes("CONSUL_HTTP_TOKEN="), "blanked, since it cannot be unset");
    assert(environ.includes("CONSUL_HTTP_TOKEN_FILE="), "its file is not pointed to either");
    assert(environ.some((v) => v.startsWith("APP_STATE_FILE=")), "the rest is inherited");
  });
});
