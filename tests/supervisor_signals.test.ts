import { assert, assertEquals } from "./support/assert.ts";
import { withNode } from "./support/harness.ts";
import { waitFor } from "./support/wait.ts";

Deno.test("SIGTERM during start-up exits 0 and leaves no app behind", async () => {
  await withNode({ primary: true }, async (n) => {
    // As soon as the runtime is up, before the first cycle can have finished.
    await n.waitOutput("supervisor 0.1.0", 10_000);
    n.signal("SIGTERM");
    assertEquals(await n.exitCode(), 0);
    assertEquals(n.liveApps(), []);
  });
});

Deno.test("SIGTERM before the runtime is ready still stops cleanly", async () => {
  await withNode({ primary: true }, async (n) => {
    n.signal("SIGTERM");
    const code = await n.exitCode();
    // Before Deno installs our handler the default action applies (killed by
    // SIGTERM); afterwards we exit 0. Either way: no app is left behind.
    assert(code === 0 || n.status?.signal === "SIGTERM", `exit ${code}`);
    assertEquals(n.liveApps(), []);
  });
});

Deno.test("a graceful stop finishes within the stop timeout plus 2 s even if the app hangs", async () => {
  const env = { NDLS_STOP_TIMEOUT: "1s" };
  await withNode({ primary: true, env, appEnv: { APP_MODE: "ignore-term" } }, async (n) => {
    await n.waitAppRunning();
    const t0 = Date.now();
    n.signal("SIGTERM");
    assertEquals(await n.exitCode(), 0);
    const took = Date.now() - t0;
    assert(took < 3_000, `stop took ${took}ms`);
    assertEquals(n.liveApps(), []);
  });
});

Deno.test("two SIGTERMs in quick succession kill the group and exit 130 at once", async () => {
  const env = { NDLS_STOP_TIMEOUT: "30s" };
  await withNode({ primary: true, env, appEnv: { APP_MODE: "ignore-term" } }, async (n) => {
    await n.waitAppRunning();
    const t0 = Date.now();
    n.signal("SIGTERM");
    await n.waitOutput("SIGTERM: stopping gracefully");
    n.signal("SIGTERM");
    assertEquals(await n.exitCode(), 130);
    assert(Date.now() - t0 < 2_000, "did not wait for the 30 s stop timeout");
    await waitFor(() => n.liveApps().length === 0, { timeoutMs: 2_000, what: "app killed" });
  });
});

Deno.test("SIGINT stops like SIGTERM", async () => {
  await withNode({ primary: true }, async (n) => {
    await n.waitAppRunning();
    n.signal("SIGINT");
    assertEquals(await n.exitCode(), 0);
    assertEquals(n.liveApps(), []);
  });
});
