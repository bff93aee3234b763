/**
 * Pins the Consul double's behaviour to what a real agent (and, for sessions
 * and KV, its servers) answers, so tests built on it can be trusted.
 * @module
 */

import { ConsulDouble, type ConsulDoubleOptions } from "./support/consul_double.ts";

function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}

function assertEquals(actual: unknown, expected: unknown, msg = ""): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${msg}\n  actual:   ${a}\n  expected: ${e}`);
}

/** A clock the test moves by hand. */
function fakeClock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

interface Reply {
  status: number;
  text: string;
  headers: Headers;
  // deno-lint-ignore no-explicit-any
  json(): any;
}

async function call(
  d: ConsulDouble,
  method: string,
  path: string,
  body?: string | object,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const res = await fetch(d.url + path, {
    method,
    headers,
    body: typeof body === "object" ? JSON.stringify(body) : body,
  });
  const text = await res.text();
  return { status: res.status, text, headers: res.headers, json: () => JSON.parse(text) };
}

async function withDouble(
  opts: ConsulDoubleOptions,
  fn: (d: ConsulDouble) => Promise<void>,
): Promise<void> {
  const d = await ConsulDouble.start(opts);
  try {
    await fn(d);
  } finally {
    await d.stop();
  }
}

/** A tiny app whose /ping answers with whatever status the test sets. */
function startApp() {
  const state = { status: 200, userAgent: "" };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    state.userAgent = req.headers.get("user-agent") ?? "";
    return new Response(".", { status: state.status });
  });
  return { state, url: `http://127.0.0.1:${server.addr.port}/ping`, stop: () => server.shutdown() };
}

/** A port nothing listens on. */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

const ttlService = (id: string, ttl = "10s", extra: object = {}) => ({
  ID: id,
  Name: "navidrome",
  Tags: ["primary"],
  Address: "10.0.0.5",
  Port: 4533,
  Meta: { node: id },
  Check: { CheckID: `${id}-ttl`, TTL: ttl, ...extra },
});

Deno.test("registering a service answers 200 with an empty body and lists it as the agent does", async () => {
  await withDouble({}, async (d) => {
    const reg = await call(d, "PUT", "/v1/agent/service/register", ttlService("nd-a"));
    assertEquals([reg.status, reg.text, reg.headers.get("content-type")], [200, "", null]);

    const all = (await call(d, "GET", "/v1/agent/services")).json();
    assertEquals(all["nd-a"], {
      ID: "nd-a",
      Service: "navidrome",
      Tags: ["primary"],
      Meta: { node: "nd-a" },
      Port: 4533,
      Address: "10.0.0.5",
      TaggedAddresses: {
        lan_ipv4: { Address: "10.0.0.5", Port: 4533 },
        wan_ipv4: { Address: "10.0.0.5", Port: 4533 },
      },
      Weights: { Passing: 1, Warning: 1 },
      EnableTagOverride: false,
      Datacenter: "dc1",
    });

    const one = await call(d, "GET", "/v1/agent/service/nd-a");
    assertEquals(one.headers.get("content-type"), "application/json");
    assertEquals(one.json().ContentHash, one.headers.get("x-consul-contenthash"));

    const checks = (await call(d, "GET", "/v1/agent/checks")).json();
    const check = checks["nd-a-ttl"];
    assertEquals(
      [check.Status, check.Type, check.ServiceID, check.ServiceName, check.Name, check.Output],
      ["critical", "ttl", "nd-a", "navidrome", "Service 'navidrome' check", ""],
    );
    assertEquals(check.Definition, { TTL: "10s" });
    assertEquals(d.services().map((s) => s.ID), ["nd-a"]);
  });
});

Deno.test("a service without an ID takes its name, and several checks get numbered IDs", async () => {
  await withDouble({}, async (d) => {
    await call(d, "PUT", "/v1/agent/service/register", {
      Name: "web",
      Checks: [{ TTL: "90s" }, { HTTP: `http://127.0.0.1:${closedPort()}/`, Interval: "1h" }],
    });
    assertEquals(d.services().map((s) => s.ID), ["web"]);
    const checks = d.checks();
    assertEquals(checks.map((c) => c.CheckID), ["service:web:1", "service:web:2"]);
    assertEquals(checks.map((c) => [c.Type, c.Interval]), [["ttl", ""], ["http", "1h0m0s"]]);
    assertEquals(checks[0].Definition, { TTL: "1m30s" });
  });
});

Deno.test("registering without a name answers 400 Missing service name", async () => {
  await withDouble({}, async (d) => {
    const r = await call(d, "PUT", "/v1/agent/service/register", { ID: "x", Port: 1 });
    assertEquals([r.status, r.text], [400, "Missing service name"]);
    assertEquals(r.headers.get("content-type"), "text/plain; charset=utf-8");
    const any = await call(d, "PUT", "/v1/agent/service/register", {
      Name: "x",
      Address: "0.0.0.0",
    });
    assertEquals([any.status, any.text], [400, "Invalid service address"]);
  });
});

Deno.test("a check with neither TTL nor HTTP+Interval answers 400 Invalid check", async () => {
  await withDouble({}, async (d) => {
    const noKind = await call(d, "PUT", "/v1/agent/service/register", {
      Name: "x",
      Check: { Notes: "n" },
    });
    assertEquals([noKind.status, noKind.text], [
      400,
      "Invalid check: TTL must be > 0 for TTL checks",
    ]);
    const noInterval = await call(d, "PUT", "/v1/agent/service/register", {
      Name: "x",
      Check: { HTTP: "http://127.0.0.1/ping" },
    });
    assertEquals(
      [noInterval.status, noInterval.text],
      [
        400,
        "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
      ],
    );
    const badStatus = await call(d, "PUT", "/v1/agent/service/register", {
      Name: "x",
      Check: { TTL: "1s", Status: "fine" },
    });
    assertEquals(badStatus.text, "Status for checks must 'passing', 'warning', 'critical'");
    assertEquals(d.services(), []);
  });
});

Deno.test("bad JSON, unknown check fields and malformed durations answer 400 Request decode failed", async () => {
  await withDouble({}, async (d) => {
    const reg = (body: string | object) => call(d, "PUT", "/v1/agent/service/register", body);
    const cases: [string | object, string][] = [
      ["", "Request decode failed: EOF"],
      ["{", "Request decode failed: unexpected EOF"],
      [
        { Name: "x", Check: { TTL: "10x" } },
        'Request decode failed: time: unknown unit "x" in duration "10x"',
      ],
      [
        { Name: "x", Check: { TTL: "10" } },
        'Request decode failed: time: missing unit in duration "10"',
      ],
      [
        { Name: "x", Check: { Interval: "soon", HTTP: "h" } },
        'Request decode failed: time: invalid duration "soon"',
      ],
      [
        { Name: "x", Check: { TTL: "1s", Intervall: "1s" } },
        'Request decode failed: json: unknown field "Intervall"',
      ],
      [
        { Name: "x", Port: "80" },
        "Request decode failed: json: cannot unmarshal string into Go struct field ServiceDefinition.Port of type int",
      ],
    ];
    for (const [body, expected] of cases) {
      const r = await reg(body);
      assertEquals([r.status, r.text], [400, expected], JSON.stringify(body));
    }
  });
});

Deno.test("the wrong method answers 405 with Consul's text and an Allow header", async () => {
  await withDouble({}, async (d) => {
    const r = await call(d, "GET", "/v1/agent/service/register");
    assertEquals([r.status, r.text, r.headers.get("allow")], [
      405,
      "method GET not allowed",
      "OPTIONS,PUT",
    ]);
    const options = await call(d, "OPTIONS", "/v1/kv/a");
    assertEquals([options.status, options.headers.get("allow")], [200, "OPTIONS,GET,PUT,DELETE"]);
  });
});

Deno.test("deregistering an unknown service answers 404 with Consul's text", async () => {
  await withDouble({}, async (d) => {
    const r = await call(d, "PUT", "/v1/agent/service/deregister/nd-a");
    assertEquals(
      [r.status, r.text],
      [
        404,
        'Unknown service ID "nd-a". Ensure that the service ID is passed, not the service name.',
      ],
    );
    const get = await call(d, "GET", "/v1/agent/service/nd-a");
    assertEquals([get.status, get.text], [404, "unknown service ID: nd-a"]);
  });
});

Deno.test("deregistering takes the URL-decoded ID and removes the service with its checks", async () => {
  await withDouble({}, async (d) => {
    await call(d, "PUT", "/v1/agent/service/register", ttlService("navidrome/node-a"));
    const r = await call(
      d,
      "PUT",
      `/v1/agent/service/deregister/${encodeURIComponent("navidrome/node-a")}`,
    );
    assertEquals([r.status, r.text], [200, ""]);
    assertEquals([d.services(), d.checks()], [[], []]);
  });
});

Deno.test("passing a TTL check makes the instance pass health ?passing with the note as output", async () => {
  await withDouble({}, async (d) => {
    await call(d, "PUT", "/v1/agent/service/register", ttlService("nd-a"));
    assertEquals((await call(d, "GET", "/v1/health/service/navidrome?passing")).json(), []);
    assertEquals(d.passingInstances("navidrome"), []);

    const pass = await call(d, "PUT", "/v1/agent/check/pass/nd-a-ttl?note=all%20good");
    assertEquals([pass.status, pass.text], [200, ""]);

    const health = await call(d, "GET", "/v1/health/service/navidrome?passing");
    assertEquals(health.headers.get("x-consul-knownleader"), "true");
    assert(Number(health.headers.get("x-consul-index")) > 0, "X-Consul-Index set");
    const [entry] = health.json();
    assertEquals(entry.Node.Node, "consul-double");
    assertEquals(
      [entry.Service.ID, entry.Service.Service, entry.Service.Tags, entry.Service.Port],
      ["nd-a", "navidrome", ["primary"], 4533],
    );
    assertEquals(
      entry.Checks.map((
        c: { CheckID: string; Status: string; Output: string },
      ) => [c.CheckID, c.Status, c.Output]),
      [["serfHealth", "passing", "Agent alive and reachable"], ["nd-a-ttl", "passing", "all good"]],
    );
    assertEquals(d.passingInstances("navidrome").map((s) => s.ID), ["nd-a"]);
    assertEquals((await call(d, "GET", "/v1/health/service/navidrome?tag=replica")).json(), []);
    const bad = await call(d, "GET", "/v1/health/service/navidrome?passing=maybe");
    assertEquals([bad.status, bad.text], [400, "Invalid value for ?passing"]);
  });
});

Deno.test("check update sets status and output, and unknown or non-TTL checks are refused as Consul does", async () => {
  const app = startApp();
  try {
    await withDouble({}, async (d) => {
      await call(d, "PUT", "/v1/agent/service/register", ttlService("nd-a"));
      const warn = await call(d, "PUT", "/v1/agent/check/update/nd-a-ttl", {
        Status: "warning",
        Output: "slow",
      });
      assertEquals(warn.status, 200);
      assertEquals(d.checks().map((c) => [c.Status, c.Output]), [["warning", "slow"]]);

      const invalid = await call(d, "PUT", "/v1/agent/check/update/nd-a-ttl", { Status: "bogus" });
      assertEquals([invalid.status, invalid.text], [400, "Invalid check status: 'bogus'"]);

      const unknown = await call(d, "PUT", "/v1/agent/check/pass/nope");
      assertEquals(
        [unknown.status, unknown.text],
        [404, 'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.'],
      );

      await call(d, "PUT", "/v1/agent/service/register", {
        Name: "web",
        Check: { CheckID: "web-http", HTTP: app.url, Interval: "1h" },
      });
      const notTtl = await call(d, "PUT", "/v1/agent/check/fail/web-http");
      assertEquals([notTtl.status, notTtl.text], [
        500,
        'CheckID "web-http" does not have associated TTL',
      ]);
    });
  } finally {
    await app.stop();
  }
});

Deno.test("a TTL check expires to critical with Consul's output", async () => {
  const clock = fakeClock();
  await withDouble({ now: clock.now }, async (d) => {
    await call(d, "PUT", "/v1/agent/service/register", ttlService("nd-a"));
    await call(d, "PUT", "/v1/agent/check/pass/nd-a-ttl?note=ok");
    clock.advance(9_999);
    assertEquals(d.checks()[0].Status, "passing");
    clock.advance(1);
    assertEquals(
      [d.checks()[0].Status, d.checks()[0].Output],
      ["critical", "TTL expired (last output before timeout follows): ok"],
    );
    assertEquals(d.passingInstances("navidrome"), []);
  });
});

Deno.test("re-registering keeps a check's status, and ?replace-existing-checks drops checks left out", async () => {
  await withDouble({}, async (d) => {
    await call(d, "PUT", "/v1/agent/service/register", {
      Name: "web",
      Checks: [{ CheckID: "a", TTL: "1m" }, { CheckID: "b", TTL: "1m" }],
    });
    await call(d, "PUT", "/v1/agent/check/pass/a");
    await call(d, "PUT", "/v1/agent/service/register", {
      Name: "web",
      Check: { CheckID: "a", TTL: "1m" },
    });
    assertEquals(d.checks().map((c) => [c.CheckID, c.Status]), [["a", "passing"], [
      "b",
      "critical",
    ]]);
    await call(d, "PUT", "/v1/agent/service/register?replace-existing-checks", {
      Name: "web",
      Check: { CheckID: "a", TTL: "1m" },
    });
    assertEquals(d.checks().map((c) => c.CheckID), ["a"]);
  });
});

Deno.test("passingInstances excludes a service whose HTTP check fails", async () => {
  const good = startApp();
  const bad = startApp();
  bad.state.status = 500;
  try {
    await withDouble({}, async (d) => {
      for (const [id, app] of [["good", good], ["bad", bad]] as const) {
        await call(d, "PUT", "/v1/agent/service/register", {
          ID: id,
          Name: "navidrome",
          Check: { CheckID: `${id}-http`, HTTP: app.url, Interval: "10s" },
        });
      }
      await d.waitFor((x) => x.checks().every((c) => c.Output !== ""), 2000, "both first probes");
      assertEquals(d.passingInstances("navidrome").map((s) => s.ID), ["good"]);
      const outputs = Object.fromEntries(d.checks().map((c) => [c.CheckID, [c.Status, c.Output]]));
      assertEquals(outputs["good-http"], ["passing", `HTTP GET ${good.url}: 200 OK Output: .`]);
      assertEquals(outputs["bad-http"], [
        "critical",
        `HTTP GET ${bad.url}: 500 Internal Server Error Output: .`,
      ]);
      assertEquals(good.state.userAgent, "Consul Health Check");
    });
  } finally {
    await good.stop();
    await bad.stop();
  }
});

Deno.test("an HTTP check is probed every interval: 429 warns, other failures go critical", async () => {
  const app = startApp();
  try {
    await withDouble({ minCheckIntervalMs: 20 }, async (d) => {
      await call(d, "PUT", "/v1/agent/service/register", {
        Name: "web",
        Check: { HTTP: app.url, Interval: "20ms" },
      });
      const status = () => d.checks()[0].Status;
      await d.waitFor(() => status() === "passing", 2000, "passing");
      app.state.status = 429;
      await d.waitFor(() => status() === "warning", 2000, "warning on 429");
      app.state.status = 503;
      await d.waitFor(() => status() === "critical", 2000, "critical on 503");
      assertEquals(d.checks()[0].Output, `HTTP GET ${app.url}: 503 Service Unavailable Output: .`);
    });
  } finally {
    await app.stop();
  }
});

Deno.test("the reaper deregisters a service critical longer than DeregisterCriticalServiceAfter, raised to a minute", async () => {
  const clock = fakeClock();
  await withDouble({ now: clock.now }, async (d) => {
    await call(
      d,
      "PUT",
      "/v1/agent/service/register",
      ttlService("nd-a", "10s", {
        DeregisterCriticalServiceAfter: "30s",
      }),
    );
    // Registered critical, the critical clock only starts when the TTL runs out (t=10s).
    clock.advance(60_000); // reaper at 30 s and 60 s: critical for 50 s, under the 1 min floor.
    assertEquals(d.services().map((s) => s.ID), ["nd-a"]);
    clock.advance(29_999);
    assertEquals(d.services().map((s) => s.ID), ["nd-a"]);
    clock.advance(1); // reaper at 90 s: critical for 80 s.
    assertEquals([d.services(), d.checks()], [[], []]);
  });
});

Deno.test("restart restores persisted services with critical checks, on the same port", async () => {
  const clock = fakeClock();
  const dataDir = await Deno.makeTempDir();
  const deadUrl = `http://127.0.0.1:${closedPort()}/ping`;
  try {
    await withDouble({ now: clock.now, dataDir }, async (d) => {
      const port = d.port;
      await call(d, "PUT", "/v1/agent/service/register", ttlService("nd-a", "30s"));
      await call(d, "PUT", "/v1/agent/service/register", {
        ID: "nd-b",
        Name: "navidrome",
        Check: { CheckID: "nd-b-http", HTTP: deadUrl, Interval: "1h", Status: "passing" },
      });
      await call(d, "PUT", "/v1/agent/check/pass/nd-a-ttl?note=ok");
      await d.waitFor(() => d.checks().some((c) => c.Output.includes("refused")), 2000, "b probed");

      await d.restart();
      assertEquals(d.port, port);
      assertEquals(d.services().map((s) => s.ID).sort(), ["nd-a", "nd-b"]);
      const statuses = () => Object.fromEntries(d.checks().map((c) => [c.CheckID, c.Status]));
      // A TTL check's last state survives while its TTL lasts; others start over.
      assertEquals(statuses()["nd-a-ttl"], "passing");
      await d.waitFor(() => statuses()["nd-b-http"] === "critical", 2000, "b critical again");
      const b = d.checks().find((c) => c.CheckID === "nd-b-http");
      assertEquals(
        b?.Output,
        `Get "${deadUrl}": dial tcp ${new URL(deadUrl).host}: connect: connection refused`,
      );

      await d.stop();
      clock.advance(31_000);
      await d.restart();
      assertEquals(statuses()["nd-a-ttl"], "critical");
      assertEquals((await call(d, "GET", "/v1/agent/service/nd-a")).status, 200);
    });
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("restart without a data dir forgets agent services but keeps sessions and KV", async () => {
  await withDouble({}, async (d) => {
    await call(d, "PUT", "/v1/agent/service/register", ttlService("nd-a"));
    await call(d, "PUT", "/v1/kv/k", "v");
    const { ID } = (await call(d, "PUT", "/v1/session/create", {})).json();
    await d.restart();
    assertEquals(d.services(), []);
    assertEquals(d.sessions().map((s) => s.ID), [ID]);
    assertEquals(d.kv("k")?.Value, btoa("v"));
  });
});

Deno.test("forget drops a service and its persisted files, as a wiped data dir would", async () => {
  const dataDir = await Deno.makeTempDir();
  try {
    await withDouble({ dataDir }, async (d) => {
      await call(d, "PUT", "/v1/agent/service/register", ttlService("nd-a"));
      d.forget("nd-a");
      assertEquals((await call(d, "GET", "/v1/agent/service/nd-a")).status, 404);
      await d.restart();
      assertEquals(d.services(), []);
      assertEquals(d.calls.length, 2);
    });
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("with ACLs, tokens are resolved and refused with Consul's texts", async () => {
  const aclTokens = {
    "writer-secret": { serviceWrite: true, agentRead: true },
    "reader-secret": { serviceWrite: false, accessorId: "6a1253d2-1785-24fd-91c2-f8e78c745511" },
  };
  await withDouble({ aclTokens }, async (d) => {
    const reg = (headers: Record<string, string>) =>
      call(d, "PUT", "/v1/agent/service/register", ttlService("nd-a"), headers);

    const unknown = await reg({ "X-Consul-Token": "nope" });
    assertEquals([unknown.status, unknown.text], [403, "ACL not found"]);
    assertEquals(unknown.headers.get("x-consul-default-acl-policy"), "deny");

    const reader = await reg({ "X-Consul-Token": "reader-secret" });
    assertEquals(
      [reader.status, reader.text],
      [
        403,
        `Permission denied: token with AccessorID '6a1253d2-1785-24fd-91c2-f8e78c745511' lacks permission 'service:write' on "navidrome"`,
      ],
    );

    const anonymous = await reg({});
    assertEquals(
      anonymous.text,
      `Permission denied: anonymous token lacks permission 'service:write' on "navidrome". The anonymous token is used implicitly when a request does not specify a token.`,
    );

    const writer = await reg({ "Authorization": "Bearer writer-secret" });
    assertEquals(writer.status, 200);
    assertEquals(d.calls.map((c) => [c.token, c.status]), [
      ["nope", 403],
      ["reader-secret", 403],
      [null, 403],
      ["writer-secret", 200],
    ]);

    const self = await call(d, "GET", "/v1/agent/self", undefined, {
      "X-Consul-Token": "reader-secret",
    });
    assertEquals(self.status, 403);
    assert(self.text.endsWith(`lacks permission 'agent:read' on "consul-double"`), self.text);
    const selfOk = await call(d, "GET", "/v1/agent/self", undefined, {
      "X-Consul-Token": "writer-secret",
    });
    assertEquals([selfOk.json().Config.NodeName, selfOk.json().Config.Datacenter], [
      "consul-double",
      "dc1",
    ]);

    const kv = await call(d, "GET", "/v1/kv/litefs/primary", undefined, {
      "X-Consul-Token": "nope",
    });
    assertEquals([kv.status, kv.text], [403, "rpc error making call: ACL not found"]);
  });
});

Deno.test("LiteFS's lease calls work as against Consul: create, acquire, read, release, destroy", async () => {
  await withDouble({}, async (d) => {
    // The Go client's CreateNoChecks body, as LiteFS v0.5.14 sends it.
    const created = await call(d, "PUT", "/v1/session/create", {
      NodeChecks: [],
      Name: "litefs",
      LockDelay: "1000ms",
      Behavior: "delete",
      TTL: "10s",
    });
    assertEquals(created.status, 200);
    const a = created.json().ID;
    const b =
      (await call(d, "PUT", "/v1/session/create", { Behavior: "delete", TTL: "10s" })).json().ID;
    const info = JSON.stringify({ hostname: "node-a", "advertise-url": "http://node-a:20202" });
    const octet = { "Content-Type": "application/octet-stream" };

    assertEquals(
      (await call(d, "PUT", `/v1/kv/litefs/primary?acquire=${a}`, info, octet)).text,
      "true",
    );
    assertEquals(
      (await call(d, "PUT", `/v1/kv/litefs/primary?acquire=${b}`, "x", octet)).text,
      "false",
    );

    const got = await call(d, "GET", "/v1/kv/litefs/primary");
    const [entry] = got.json();
    assertEquals(
      [entry.Key, entry.Flags, atob(entry.Value), entry.Session, entry.LockIndex],
      ["litefs/primary", 0, info, a, 1],
    );
    assertEquals(got.headers.get("x-consul-index"), String(entry.ModifyIndex));
    assertEquals((await call(d, "GET", "/v1/kv/litefs/primary?raw")).text, info);

    assertEquals((await call(d, "PUT", `/v1/kv/litefs/primary?release=${b}`)).text, "false");
    assertEquals((await call(d, "PUT", `/v1/kv/litefs/primary?release=${a}`)).text, "true");
    // Release writes the (empty) body: the key stays, valueless and unheld.
    const released = (await call(d, "GET", "/v1/kv/litefs/primary")).json()[0];
    assertEquals([released.Value, released.Session, released.LockIndex], [null, undefined, 1]);
    // No lock-delay after an explicit release: another session may take it at once.
    assertEquals((await call(d, "PUT", `/v1/kv/litefs/primary?acquire=${b}`, info)).text, "true");
    assertEquals(d.kv("litefs/primary")?.LockIndex, 2);

    const destroyed = await call(d, "PUT", `/v1/session/destroy/${b}`);
    assertEquals([destroyed.status, destroyed.text], [200, "true"]);
    // Behavior "delete": the held key goes with the session.
    const gone = await call(d, "GET", "/v1/kv/litefs/primary");
    assertEquals([gone.status, gone.text], [404, ""]);
    assert(Number(gone.headers.get("x-consul-index")) > 0, "index header on 404");

    assertEquals((await call(d, "GET", "/v1/kv/litefs/primary/clusterid")).status, 404);
    await call(d, "PUT", "/v1/kv/litefs/primary/clusterid", "LFSC0123456789ABCDEF");
    assertEquals(atob(d.kv("litefs/primary/clusterid")?.Value ?? ""), "LFSC0123456789ABCDEF");
  });
});

Deno.test("renewing an expired session answers 404 with Consul's text and its keys are deleted", async () => {
  const clock = fakeClock();
  await withDouble({ now: clock.now }, async (d) => {
    const id = (await call(d, "PUT", "/v1/session/create", {
      Name: "litefs",
      Behavior: "delete",
      LockDelay: "1000ms",
      TTL: "10s",
    })).json().ID;
    await call(d, "PUT", `/v1/kv/litefs/primary?acquire=${id}`, "a");
    // Consul's servers wait 2 x TTL: 19 s after the last renew the session lives.
    clock.advance(19_000);
    const renewed = await call(d, "PUT", `/v1/session/renew/${id}`);
    assertEquals(renewed.status, 200);
    const [session] = renewed.json();
    assertEquals(
      [
        session.ID,
        session.Name,
        session.Behavior,
        session.TTL,
        session.LockDelay,
        session.NodeChecks,
      ],
      [id, "litefs", "delete", "10s", 1e9, ["serfHealth"]],
    );
    clock.advance(19_999);
    assertEquals(d.sessions().length, 1);
    clock.advance(1);
    const expired = await call(d, "PUT", `/v1/session/renew/${id}`);
    assertEquals([expired.status, expired.text], [404, `Session id '${id}' not found`]);
    assertEquals(d.kv("litefs/primary"), undefined);
  });
});

Deno.test("acquire is refused during lock-delay after a session expires", async () => {
  const clock = fakeClock();
  await withDouble({ now: clock.now }, async (d) => {
    const create = async () =>
      (await call(d, "PUT", "/v1/session/create", {
        Behavior: "delete",
        LockDelay: "1000ms",
        TTL: "10s",
      }))
        .json().ID;
    const a = await create();
    await call(d, "PUT", `/v1/kv/litefs/primary?acquire=${a}`, "a");
    clock.advance(20_000); // a expires now (2 x TTL); the lock-delay runs until 21 s.
    const b = await create();
    const acquire = async () =>
      (await call(d, "PUT", `/v1/kv/litefs/primary?acquire=${b}`, "b")).text;
    assertEquals(await acquire(), "false");
    clock.advance(999);
    assertEquals(await acquire(), "false");
    clock.advance(1);
    assertEquals(await acquire(), "true");
  });
});

Deno.test("session create is validated as Consul's servers do", async () => {
  await withDouble({}, async (d) => {
    const create = (body: object) => call(d, "PUT", "/v1/session/create", body);
    const short = await create({ TTL: "5s" });
    assertEquals(
      [short.status, short.text],
      [
        500,
        "rpc error making call: Invalid Session TTL '5000000000', must be between [10s=24h0m0s]",
      ],
    );
    assertEquals(
      (await create({ Behavior: "keep" })).text,
      "rpc error making call: Invalid Behavior setting 'keep'",
    );
    const noNode = await create({ Node: "litefs/litefs" });
    assertEquals([noNode.status, noNode.text], [
      500,
      "rpc error making call: Missing node registration",
    ]);

    // LiteFS registers its shared node in the catalog first when consul.url has a path.
    const reg = await call(d, "PUT", "/v1/catalog/register", {
      Node: "litefs/litefs",
      Address: "localhost",
    });
    assertEquals([reg.status, reg.text], [200, "true"]);
    const ok = await create({ Node: "litefs/litefs", TTL: "10s" });
    assertEquals(ok.status, 200);
    const [session] = d.sessions();
    assertEquals([session.Node, session.Behavior, session.LockDelay, session.NodeChecks], [
      "litefs/litefs",
      "release",
      15e9,
      ["serfHealth"],
    ]);
  });
});

Deno.test("KV cas, flags, recurse, keys and delete answer as Consul does", async () => {
  await withDouble({}, async (d) => {
    assertEquals((await call(d, "PUT", "/v1/kv/app/a?cas=0", "1")).text, "true");
    assertEquals((await call(d, "PUT", "/v1/kv/app/a?cas=0", "2")).text, "false");
    const index = d.kv("app/a")?.ModifyIndex;
    assertEquals((await call(d, "PUT", `/v1/kv/app/a?cas=${index}&flags=42`, "3")).text, "true");
    assertEquals([d.kv("app/a")?.Flags, atob(d.kv("app/a")?.Value ?? "")], [42, "3"]);
    await call(d, "PUT", "/v1/kv/app/sub/b", "4");

    const all = (await call(d, "GET", "/v1/kv/app/?recurse")).json();
    assertEquals(all.map((e: { Key: string }) => e.Key), ["app/a", "app/sub/b"]);
    assertEquals((await call(d, "GET", "/v1/kv/app/?keys&separator=/")).json(), [
      "app/a",
      "app/sub/",
    ]);

    const conflict = await call(d, "PUT", "/v1/kv/app/a?cas=1&acquire=x");
    assertEquals([conflict.status, conflict.text], [400, "Conflicting flags: acquire=x&cas=1\n"]);
    const badFlags = await call(d, "PUT", "/v1/kv/app/a?flags=x");
    assertEquals([badFlags.status, badFlags.text], [
      500,
      'strconv.ParseUint: parsing "x": invalid syntax',
    ]);
    const noSession = await call(
      d,
      "PUT",
      "/v1/kv/app/a?acquire=4e7d9a3c-0000-0000-0000-000000000000",
    );
    assertEquals(
      [noSession.status, noSession.text],
      [500, 'rpc error making call: invalid session "4e7d9a3c-0000-0000-0000-000000000000"'],
    );

    assertEquals((await call(d, "DELETE", "/v1/kv/app/a?cas=1")).text, "false");
    assertEquals((await call(d, "DELETE", "/v1/kv/app/a")).text, "true");
    assertEquals((await call(d, "DELETE", "/v1/kv/app?recurse")).text, "true");
    assertEquals((await call(d, "GET", "/v1/kv/app/?recurse")).status, 404);
  });
});

Deno.test("setFault answers matching requests with the injected status and records it", async () => {
  await withDouble({}, async (d) => {
    d.setFault({
      status: 500,
      body: "rpc error: no leader",
      paths: /^\/v1\/agent\/service\/register/,
    });
    const faulted = await call(d, "PUT", "/v1/agent/service/register", ttlService("nd-a"));
    assertEquals([faulted.status, faulted.text], [500, "rpc error: no leader"]);
    assertEquals((await call(d, "GET", "/v1/agent/services")).status, 200);
    assertEquals(d.services(), []);
    d.setFault(null);
    assertEquals(
      (await call(d, "PUT", "/v1/agent/service/register", ttlService("nd-a"))).status,
      200,
    );
    assertEquals(d.calls.map((c) => c.status), [500, 200, 200]);
  });
});

Deno.test("hang holds requests unanswered until released, and stop drops the held ones", async () => {
  const d = await ConsulDouble.start();
  try {
    d.hang(true);
    const timedOut = await fetch(`${d.url}/v1/agent/self`, { signal: AbortSignal.timeout(100) })
      .then(() => "answered", (e) => e.name);
    assertEquals(timedOut, "TimeoutError");

    const held = call(d, "GET", "/v1/agent/self");
    await d.waitFor((x) => x.calls.length === 2, 2000, "second call to arrive");
    d.hang(false);
    assertEquals((await held).status, 200);

    d.hang(true);
    const dropped = fetch(`${d.url}/v1/agent/self`).then(() => "answered", () => "dropped");
    await d.waitFor((x) => x.calls.length === 3, 2000, "third call to arrive");
    await d.stop();
    assertEquals(await dropped, "dropped");
    // The first request was answered on release, though its client had given up.
    assertEquals(d.calls.map((c) => c.status), [200, 200, null]);
  } finally {
    await d.stop();
  }
});

Deno.test("latencyMs delays every answer", async () => {
  await withDouble({ latencyMs: 150 }, async (d) => {
    const started = performance.now();
    assertEquals((await call(d, "GET", "/v1/agent/self")).status, 200);
    assert(performance.now() - started >= 140, "answer came before the latency");
    d.latencyMs = 0;
  });
});

Deno.test("unknown paths answer 404 with Consul's text and are recorded", async () => {
  await withDouble({}, async (d) => {
    const r = await call(d, "GET", "/v1/status/whatever?x=1");
    assertEquals([r.status, r.text], [
      404,
      "Invalid URL path: not a recognized HTTP API endpoint\n",
    ]);
    assertEquals(d.calls.map((c) => [c.method, c.path, c.status]), [[
      "GET",
      "/v1/status/whatever?x=1",
      404,
    ]]);
  });
});

Deno.test("a double listening on 0.0.0.0 is reached through 127.0.0.1 and reports that address", async () => {
  await withDouble({ hostname: "0.0.0.0" }, async (d) => {
    assertEquals(d.url, `http://127.0.0.1:${d.port}`);
    const self = (await call(d, "GET", "/v1/agent/self")).json();
    assertEquals(self.Member.Addr, "127.0.0.1");
  });
});
