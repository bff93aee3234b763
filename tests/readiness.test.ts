import { assert, assertEquals } from "./support/assert.ts";
import { FIRST_RETRY_MS, probeDelay, waitReady } from "../lib/readiness.ts";
import { freePort } from "./support/wait.ts";

Deno.test("probes again soon after a failed first probe, doubling up to the interval", () => {
  const delays = Array.from({ length: 8 }, (_, n) => probeDelay(n, 500));
  assertEquals(delays, [10, 20, 40, 80, 160, 320, 500, 500]);
  assertEquals(probeDelay(0, 10), 10, "an interval below the first retry caps it");
  assertEquals(probeDelay(0, 500), FIRST_RETRY_MS);
});

Deno.test("is ready at the first 2xx answer, after failing answers", async () => {
  let probes = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    probes++;
    return new Response(".", { status: probes < 3 ? 503 : 200 });
  });
  try {
    const ready = await waitReady(
      `http://127.0.0.1:${server.addr.port}/ping`,
      500,
      new AbortController().signal,
    );
    assert(ready, "ready");
    assertEquals(probes, 3);
  } finally {
    await server.shutdown();
  }
});

Deno.test("stops probing and answers false once aborted", async () => {
  const abort = new AbortController();
  // Nothing listens on a free port: every probe fails.
  const pending = waitReady(`http://127.0.0.1:${freePort()}/ping`, 500, abort.signal);
  abort.abort();
  assertEquals(await pending, false);
});
