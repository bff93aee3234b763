import { assert, assertEquals, assertIncludes } from "./support/assert.ts";
import { withNode } from "./support/harness.ts";
import { freePort, processAlive, processGroupMembers, waitFor } from "./support/wait.ts";

/** Waits for the stand-in app's grandchild to write its pid (APP_GRANDCHILD_PIDFILE). */
function grandchildPid(pidFile: string): Promise<number> {
  return waitFor(() => {
    try {
      return Number(Deno.readTextFileSync(pidFile)) || false;
    } catch {
      return false;
    }
  }, { timeoutMs: 5_000, what: "grandchild pid" });
}

Deno.test("a child that ignores SIGTERM is killed after the stop timeout", async () => {
  const env = { NDLS_STOP_TIMEOUT: "500ms" };
  await withNode({ primary: true, env, appEnv: { APP_MODE: "ignore-term" } }, async (n) => {
    const pid = await n.waitAppRunning();
    const t0 = Date.now();
    n.demote("node-b");
    await waitFor(() => n.appEvents().some((e) => e.event === "term"), {
      timeoutMs: 3_000,
      what: "SIGTERM reached the app",
    });
    assert(processAlive(pid), "the app survives SIGTERM");
    await n.waitAppGone(5_000);
    const took = Date.now() - t0;
    assert(took >= 450, `killed after ${took}ms, not before the timeout`);
    await n.waitOutput("[WRN] supervisor: Navidrome ignored SIGTERM for NDLS_STOP_TIMEOUT");
    assertIncludes(n.output, "its group was killed (signal SIGKILL)");
  });
});

Deno.test("a prompt stop is logged with how long it took and how the app ended", async () => {
  await withNode({ primary: true }, async (n) => {
    await n.waitAppRunning();
    n.demote("node-b");
    await n.waitAppGone();
    await n.waitOutput(/Navidrome stopped in \d+ms \(code 0\)/);
  });
});

Deno.test("SIGUSR1 reaches Navidrome alone, never its children (it would kill an ffmpeg)", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "ndls-usr1-" });
  const pidFile = `${tmp}/grandchild.pid`;
  try {
    const appEnv = { APP_GRANDCHILD: "1", APP_GRANDCHILD_PIDFILE: pidFile };
    await withNode({ primary: true, appEnv }, async (n) => {
      await n.waitAppRunning();
      // The grandchild is a `sleep`: SIGUSR1's default action would end it.
      const gc = await grandchildPid(pidFile);
      n.signal("SIGUSR1");
      await waitFor(() => n.appEvents().some((e) => e.event === "usr1"), {
        timeoutMs: 3_000,
        what: "SIGUSR1 at the app",
      });
      await n.waitOutput("SIGUSR1 passed to Navidrome");
      assert(processAlive(gc), "the grandchild survived the SIGUSR1");
    });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("no grandchild survives a stop", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "ndls-gc-" });
  const pidFile = `${tmp}/grandchild.pid`;
  try {
    const appEnv = { APP_GRANDCHILD: "1", APP_GRANDCHILD_PIDFILE: pidFile };
    await withNode({ primary: true, appEnv }, async (n) => {
      const pid = await n.waitAppRunning();
      const gc = await grandchildPid(pidFile);
      assert(processGroupMembers(pid).includes(gc), "the grandchild is in the app's group");
      n.demote("node-b");
      await n.waitAppGone();
      await waitFor(() => !processAlive(gc), { timeoutMs: 3_000, what: "grandchild gone" });
      assertEquals(processGroupMembers(pid), []);
    });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a crash loop gives up with exit 75 after the maximum failures", async () => {
  const env = {
    NDLS_MAX_FAILURES: "3",
    NDLS_RESTART_DELAY: "50ms",
    NDLS_RESTART_DELAY_MAX: "200ms",
  };
  await withNode({ primary: true, env, appEnv: { APP_MODE: "crash-at-start" } }, async (n) => {
    assertEquals(await n.exitCode(15_000), 75);
    assertEquals(n.appStarts(), 3);
    assertIncludes(
      n.output,
      "Navidrome exited unexpectedly (code 3); failure 1 of 3, restarting in 50ms",
    );
    assertIncludes(
      n.output,
      "Navidrome exited unexpectedly (code 3); failure 2 of 3, restarting in 100ms",
    );
    assertIncludes(n.output, "Navidrome failed 3 times in a row (last: code 3)");
  });
});

Deno.test("an unexpected exit is restarted after a delay and logged with its code", async () => {
  const env = { NDLS_RESTART_DELAY: "100ms" };
  const appEnv = { APP_MODE: "exit-after", APP_EXIT_AFTER_MS: "300" };
  await withNode({ primary: true, env, appEnv }, async (n) => {
    await waitFor(() => n.appStarts() >= 2, { timeoutMs: 10_000, what: "a restart" });
    assertIncludes(
      n.output,
      "Navidrome exited unexpectedly (code 4); failure 1 of 5, restarting in 100ms",
    );
    n.demote("node-b");
    await n.waitAppGone();
  });
});

Deno.test("SIGUSR1 is passed to the app and SIGHUP is not", async () => {
  await withNode({ primary: true }, async (n) => {
    await n.waitAppRunning();
    n.signal("SIGUSR1");
    await waitFor(() => n.appEvents().some((e) => e.event === "usr1"), {
      timeoutMs: 3_000,
      what: "SIGUSR1 at the app",
    });
    n.signal("SIGHUP");
    await n.waitOutput("SIGHUP ignored");
    n.signal("SIGUSR1");
    await waitFor(() => n.appEvents().filter((e) => e.event === "usr1").length === 2, {
      timeoutMs: 3_000,
      what: "a second SIGUSR1, sent after the SIGHUP",
    });
    assert(!n.appEvents().some((e) => e.event === "hup"), "SIGHUP never reached the app");
    assertEquals(n.liveApps().length, 1);
  });
});

Deno.test("a command that does not exist is a configuration error: exit 78", async () => {
  await withNode({ primary: true, command: ["no-such-navidrome-binary"] }, async (n) => {
    assertEquals(await n.exitCode(), 78);
    assertIncludes(n.output, 'config error: command "no-such-navidrome-binary" not found on PATH');
  });
});

Deno.test("a missing command after -- is a configuration error: exit 78", async () => {
  await withNode({ primary: true, command: [] }, async (n) => {
    assertEquals(await n.exitCode(), 78);
    assertIncludes(n.output, "config error: no command to supervise");
  });
});

Deno.test("a bad setting is one line naming it, exit 78, nothing started", async () => {
  await withNode({ primary: true, env: { NDLS_STOP_TIMEOUT: "soon" } }, async (n) => {
    assertEquals(await n.exitCode(), 78);
    assertEquals(
      n.output.trim(),
      'config error: NDLS_STOP_TIMEOUT="soon": expected a duration such as 250ms, 10s or 1m',
    );
    assertEquals(n.appStarts(), 0);
  });
});

Deno.test("a Navidrome that never answers its health URL is reported, and stays unregistered", async () => {
  const env = {
    NDLS_HEALTH_URL: `http://127.0.0.1:${freePort()}/ping`,
    NDLS_READY_WARNING: "300ms",
  };
  await withNode({ primary: true, env }, async (n) => {
    await n.waitAppRunning();
    await n.waitOutput("[WRN] supervisor: Navidrome has not answered http://127.0.0.1:");
    assertIncludes(n.output, "for 300ms; not registered until it does");
  });
});
