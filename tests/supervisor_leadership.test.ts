import { assert, assertEquals, assertExcludes, assertIncludes } from "./support/assert.ts";
import { InvariantMonitor, withNode } from "./support/harness.ts";
import { waitFor } from "./support/wait.ts";

Deno.test("starts the app on a primary and stops it on demotion", async () => {
  // The event stream must be what sees the demotion: no watch, a poll too slow to beat it.
  const env = { NDLS_WATCH: "false", NDLS_POLL_INTERVAL: "1h" };
  await withNode({ primary: true, env }, async (n) => {
    const mon = new InvariantMonitor([n]);
    await n.waitAppRunning();
    n.demote("node-b");
    await n.waitAppGone();
    await n.waitOutput("role primary -> replica (cause: event");
    n.promote();
    await n.waitAppRunning();
    assertEquals(n.appStarts(), 2);
    assertEquals(mon.stop(), []);
  });
});

Deno.test("detects promotion and demotion by polling alone: watching off, events silent", async () => {
  await withNode({ primary: false, env: { NDLS_WATCH: "false" } }, async (n) => {
    n.demote("node-b");
    await n.waitOutput("-> replica");
    n.sim!.silentEvents(true);
    n.promote();
    // Only /info (every 5 s by default... here the poll plus /info after it) can reveal it.
    await n.waitAppRunning(10_000);
    n.demote("node-b");
    // `.primary` appears: the poll alone must demote, long before the next /info.
    await n.waitOutput("role primary -> replica (cause: poll", 2_000);
    await n.waitAppGone(3_000);
  });
});

Deno.test("a vanished .primary alone does not start the app while the API says replica", async () => {
  const env = { NDLS_INFO_INTERVAL: "1h", NDLS_LOG_LEVEL: "debug" };
  await withNode({ primary: false, env }, async (n) => {
    n.demote("node-b");
    await n.waitOutput("role replica: .primary names node-b");
    await Deno.remove(`${n.mountDir}/.primary`);
    // The loop logs the new reason once it has decided on the file's absence.
    await n.waitOutput("role replica: LiteFS API: primary is node-b");
    assertEquals(n.liveApps().length, 0);
    assert(!n.output.includes("started Navidrome"));
  });
});

Deno.test("the API unreachable with .primary absent is unknown: the app is never started", async () => {
  await withNode({ primary: false }, async (n) => {
    n.sim!.setApiDown(true);
    await Deno.remove(`${n.mountDir}/.primary`).catch(() => {});
    await n.waitOutput(/role \w+ -> unknown/);
    await n.waitOutput("LiteFS API unreachable");
    assertEquals(n.liveApps().length, 0);
    assert(!n.output.includes("started Navidrome"));
  });
});

Deno.test("a running app survives an unknown spell within the grace", async () => {
  await withNode({ primary: true, env: { NDLS_UNKNOWN_GRACE: "9s" } }, async (n) => {
    const pid = await n.waitAppRunning();
    n.sim!.setApiDown(true);
    await n.waitOutput("role primary -> unknown");
    n.sim!.setApiDown(false);
    await n.waitOutput("role unknown -> primary");
    assertEquals(n.liveApps(), [pid]);
  });
});

Deno.test("a running app is stopped when the unknown spell outlasts the grace", async () => {
  await withNode({ primary: true, env: { NDLS_UNKNOWN_GRACE: "500ms" } }, async (n) => {
    await n.waitAppRunning();
    n.sim!.setApiDown(true);
    await n.waitOutput("role primary -> unknown");
    await n.waitOutput("stopping Navidrome");
    assertIncludes(n.output, "role unknown beyond grace");
    await n.waitAppGone();
  });
});

Deno.test("an event stream dropped mid-line reconnects and keeps the role right", async () => {
  await withNode({ primary: true }, async (n) => {
    await n.waitAppRunning();
    n.sim!.dropStreams({ midLine: true });
    await n.waitOutput("LiteFS API lost");
    await waitFor(() => n.sim!.streamCount === 1, { timeoutMs: 5_000, what: "a new stream" });
    n.demote("node-b");
    await n.waitAppGone();
  });
});

Deno.test("garbage on the event stream is logged and ignored", async () => {
  await withNode({ primary: false }, async (n) => {
    n.demote("node-b");
    await n.waitOutput("-> replica");
    // Raw lines reach only open streams; "-> replica" may come from the poll first.
    await n.waitOutput("event stream connected");
    n.sim!.emitRaw("this is not json\n");
    n.sim!.emitRaw('{"type":"primaryChange","data":{}}\n');
    await n.waitOutput("ignored LiteFS event: not JSON");
    await n.waitOutput("ignored LiteFS event: primaryChange without isPrimary");
    n.sim!.emitTx();
    n.promote();
    await n.waitAppRunning();
  });
});

Deno.test("duplicate events start the app once", async () => {
  await withNode({ primary: false }, async (n) => {
    n.promote();
    n.promote();
    n.sim!.emitRaw('{"type":"primaryChange","data":{"isPrimary":true}}\n');
    await n.waitAppRunning();
    await n.waitOutput("primary settled");
    assertEquals(n.appStarts(), 1);
  });
});

Deno.test("an out-of-order primary event while .primary is present does not start the app", async () => {
  const env = { NDLS_INFO_INTERVAL: "1h", NDLS_LOG_LEVEL: "debug" };
  await withNode({ primary: false, env }, async (n) => {
    n.demote("node-b");
    await n.waitOutput("-> replica");
    await n.waitOutput("event stream connected");
    // A stale "I am primary" arrives after the node already became a replica...
    n.sim!.emitRaw('{"type":"primaryChange","data":{"isPrimary":true}}\n');
    // ...and a later event proves the stale one was processed (events are ordered).
    n.demote(null);
    await n.waitOutput("role replica: LiteFS API: not primary, no primary known");
    assertEquals(n.liveApps().length, 0);
    assert(!n.output.includes("started Navidrome"));
  });
});

Deno.test("isPrimary false without a hostname stops the app at once", async () => {
  await withNode({ primary: true }, async (n) => {
    await n.waitAppRunning();
    n.demote(null);
    await n.waitOutput("LiteFS API: not primary, no primary known");
    await n.waitAppGone(3_000);
  });
});

Deno.test("leadership flapping 200 times leaves one app at most and ends right", async () => {
  await withNode({ primary: false }, async (n) => {
    const mon = new InvariantMonitor([n]);
    for (let i = 0; i < 200; i++) {
      if (i % 2 === 0) n.promote();
      else n.demote("node-b");
      // Pace the stimulus so 200 changes span about three seconds.
      await new Promise((r) => setTimeout(r, 15));
    }
    // The last change (i = 199) demotes: the app must end gone.
    await n.waitAppGone(5_000);
    const mark = n.mark();
    n.promote();
    await n.waitAppRunning();
    await n.waitOutput("primary settled", 5_000, mark);
    const transitions = n.output.match(/role \w+ -> \w+/g)?.length ?? 0;
    assert(transitions >= 20, `the supervisor saw the flapping (${transitions} transitions)`);
    assertEquals(mon.stop(), []);
    assert(mon.samples > 100, `the monitor sampled (${mon.samples})`);
  });
});

Deno.test("an unreadable mount is a warning once, and its recovery is logged", async () => {
  await withNode({ primary: true }, async (n) => {
    await n.waitAppRunning();
    await Deno.remove(n.mountDir, { recursive: true });
    await n.waitOutput(`[WRN] supervisor: mount ${n.mountDir} unreadable: NotFound`);
    await n.waitOutput("role primary -> unknown");
    await Deno.mkdir(n.mountDir);
    await n.waitOutput(`mount ${n.mountDir} readable again`);
    await n.waitOutput("role unknown -> primary");
    assertEquals(n.output.split("unreadable").length - 1, 1, "warned once");
    assertEquals(n.appStarts(), 1, "the app survived the spell within the grace");
  });
});

Deno.test("a wedged LiteFS API (stream open and silent, /info unanswered) is unknown: the app stops after the grace", async () => {
  const env = { NDLS_UNKNOWN_GRACE: "500ms", NDLS_INFO_INTERVAL: "300ms" };
  await withNode({ primary: true, env }, async (n) => {
    await n.waitAppRunning();
    await n.waitOutput("event stream connected");
    n.sim!.freezeInfo(true);
    await n.waitOutput("[WRN] supervisor: LiteFS API lost: /info: ");
    await n.waitOutput("role primary -> unknown");
    await n.waitAppGone(5_000);
    assertIncludes(n.output, "role unknown beyond grace");
    assertEquals(n.output.split("LiteFS API lost: /info").length - 1, 1, "warned once");
    n.sim!.freezeInfo(false);
    await n.waitOutput("LiteFS API: /info answers again");
    await n.waitAppRunning();
  });
});

Deno.test("an API that never answers is a warning at once, logged once however often it is retried", async () => {
  // A listener that hangs up on every connection: the stream never opens.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let attempts = 0;
  const hangUp = (async () => {
    for await (const conn of listener) {
      attempts++;
      conn.close();
    }
  })().catch(() => {});
  try {
    const env = { NDLS_LITEFS_API: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}` };
    await withNode({ primary: false, env }, async (n) => {
      await n.waitOutput("[WRN] supervisor: LiteFS API lost: ");
      await waitFor(() => attempts >= 6, { timeoutMs: 10_000, what: "six connection attempts" });
      const warnings = n.output.split("\n").filter((l) => l.includes("LiteFS API lost"));
      // The stream's error and /info's differ; each is logged once.
      const fromInfo = warnings.filter((l) => l.includes("LiteFS API lost: /info: "));
      assertEquals([warnings.length, fromInfo.length], [2, 1], warnings.join("\n"));
      assertEquals(n.liveApps(), []);
    });
  } finally {
    listener.close();
    await hangUp;
  }
});

Deno.test("an endless event line is cut off: the stream reconnects and the role stays right", async () => {
  await withNode({ primary: true }, async (n) => {
    const pid = await n.waitAppRunning();
    await n.waitOutput("event stream connected");
    n.sim!.emitRaw("x".repeat(70_000));
    await n.waitOutput("LiteFS API lost: event line longer than 65536 characters");
    // The recovery is logged once the new stream has lasted EVENTS_STABLE_MS.
    await n.waitOutput("LiteFS API: event stream connected again", 10_000);
    assertEquals(n.liveApps(), [pid]);
  });
});

Deno.test("a single failed /info on a healthy primary is retried, never acted on", async () => {
  const env = { NDLS_INFO_INTERVAL: "300ms" };
  await withNode({ primary: true, env }, async (n) => {
    const pid = await n.waitAppRunning();
    await n.waitOutput("event stream connected");
    const infos = () => n.sim!.requests.filter((r) => r.path === "/info").length;
    const before = infos();
    n.sim!.failInfo(1);
    // The failed one, its quick retry and one more periodic read.
    await waitFor(() => infos() >= before + 3, { timeoutMs: 5_000, what: "three more /info" });
    assertExcludes(n.output, "primary -> unknown", n.output);
    assertExcludes(n.output, "LiteFS API lost");
    assertEquals(n.liveApps(), [pid]);
  });
});

Deno.test("a replica whose .primary vanishes after a missed demotion asks /info before promoting", async () => {
  // /info is never polled on its own here: only a confirmation can read it.
  const env = { NDLS_INFO_INTERVAL: "1h", NDLS_LOG_LEVEL: "debug" };
  await withNode({ primary: true, env }, async (n) => {
    await n.waitAppRunning();
    n.sim!.silentEvents(true);
    n.sim!.setReplica("node-b");
    await n.waitOutput("role primary -> replica (cause: poll; .primary names node-b)");
    await n.waitAppGone();
    // The node loses its primary: .primary goes, /info says "not primary", no event.
    n.sim!.setReplica(null);
    await n.waitOutput("role replica: LiteFS API: not primary, no primary known");
    assertExcludes(n.output, "replica -> primary");
    assertEquals(n.appStarts(), 1);
  });
});

Deno.test("file mode never promotes while the API's stream is open and /info fails", async () => {
  const env = { NDLS_LEADERSHIP: "file", NDLS_INFO_INTERVAL: "300ms" };
  await withNode({ primary: false, env }, async (n) => {
    n.demote(null);
    await n.waitOutput("event stream connected");
    await n.waitOutput("-> replica");
    n.sim!.failInfo(1_000);
    await n.waitOutput("LiteFS API lost: /info: /info answered 500");
    await n.waitOutput("role replica -> unknown");
    assertExcludes(n.output, "-> primary");
    assertEquals(n.appStarts(), 0);
  });
});

Deno.test("a stream that ends right after init backs off and warns once", async () => {
  await withNode({ primary: true }, async (n) => {
    const pid = await n.waitAppRunning();
    await n.waitOutput("event stream connected");
    const opened = () => n.sim!.requests.filter((r) => r.path === "/events").map((r) => r.at);
    const before = opened().length;
    n.sim!.endStreamsAfterInit(true);
    n.sim!.dropStreams({ clean: true });
    await waitFor(() => opened().length >= before + 5, { timeoutMs: 10_000, what: "5 reconnects" });
    const at = opened().slice(before);
    // 100, 200, 400, 800 ms between attempts: the backoff grows, it never resets.
    const gaps = at.slice(1).map((t, i) => t - at[i]);
    assert(gaps[3] >= 700, `gaps ${gaps.join(", ")} ms`);
    assertEquals(n.output.split("LiteFS API lost: event stream ended").length - 1, 1, n.output);
    assertEquals(n.liveApps(), [pid]);
    n.sim!.endStreamsAfterInit(false);
  });
});
