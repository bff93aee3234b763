import { assert, assertEquals } from "./support/assert.ts";
import { TestNode } from "./support/harness.ts";
import { waitFor } from "./support/wait.ts";

/** Runs `body` with a fresh node and always cleans up. */
async function withNode(
  opts: Parameters<typeof TestNode.start>[0],
  body: (n: TestNode) => Promise<void>,
): Promise<void> {
  const node = await TestNode.start(opts);
  try {
    await body(node);
  } finally {
    await node.cleanup();
  }
}

Deno.test("starts the app on a primary and stops it on demotion", async () => {
  await withNode({ primary: true }, async (n) => {
    await n.waitAppRunning();
    n.sim!.setReplica("node-b");
    await n.waitAppGone();
    await n.waitOutput("role primary -> replica (cause: event");
    n.sim!.setPrimary();
    await n.waitAppRunning();
    assertEquals(n.appStarts(), 2);
  });
});

Deno.test("detects leadership by polling with watching off and events silent", async () => {
  await withNode(
    { primary: false, env: { NDLS_WATCH: "false", NDLS_INFO_INTERVAL: "1h" } },
    async (n) => {
      await n.waitOutput("role start -> replica");
      // No event: only the .primary poll (with the API still saying replica) can see it...
      n.sim!.silentEvents(true);
      n.sim!.setPrimary();
      // ...and a vanished .primary alone must not be taken as primacy while the API is reachable
      // and has said replica; the supervisor only learns the truth on the next /info.
      await n.waitOutput(/role replica -> unknown|role replica -> primary/, 5_000).catch(() => {});
      assertEquals(n.liveApps().length, 0);
    },
  );
});

Deno.test("a vanished .primary alone does not start the app while the API says replica", async () => {
  await withNode({ primary: false, env: { NDLS_INFO_INTERVAL: "1h" } }, async (n) => {
    n.sim!.setReplica("node-b");
    await n.waitOutput("role start -> replica");
    await Deno.remove(`${n.mountDir}/.primary`);
    // The next poll sees the file gone; the role must stay replica (API says so).
    await n.waitOutput("LiteFS API: primary is node-b");
    const before = n.output.length;
    await waitFor(() => n.sim!.requests.length > 0, { timeoutMs: 2_000, what: "requests" });
    assertEquals(n.liveApps().length, 0);
    assert(!n.output.slice(before).includes("started Navidrome"));
  });
});
