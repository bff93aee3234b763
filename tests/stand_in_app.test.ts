import assert from "node:assert/strict";
import {
  freePort,
  processAlive,
  processGroupMembers,
  readProcStat,
  waitFor,
} from "./support/wait.ts";

const APP = new URL("./support/stand_in_app.ts", import.meta.url).pathname;

/** Generous for a loaded CI machine; the happy path takes milliseconds. */
const DEADLINE_MS = 5000;

interface App {
  child: Deno.ChildProcess;
  port: number;
  stateFile: string;
  dir: string;
}

/** Starts the stand-in with `env`, in its own process group when `detached`. */
async function startApp(env: Record<string, string>, detached = false): Promise<App> {
  const dir = await Deno.makeTempDir({ prefix: "stand-in-" });
  const port = freePort();
  const stateFile = `${dir}/state.jsonl`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", APP],
    env: { APP_PORT: String(port), APP_STATE_FILE: stateFile, ...env },
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
    detached,
  }).spawn();
  return { child, port, stateFile, dir };
}

/** SIGKILLs whatever of the app (and, when detached, its group) is left, and removes its dir. */
async function cleanUp(app: App, detached = false): Promise<void> {
  try {
    if (detached) Deno.kill(-app.child.pid, "SIGKILL");
    else app.child.kill("SIGKILL");
  } catch {
    // Already gone.
  }
  await app.child.status;
  await Deno.remove(app.dir, { recursive: true });
}

type StateEvent = { event: string; pid: number; at: number; code?: number; mode?: string };

async function stateEvents(app: App): Promise<StateEvent[]> {
  const text = await Deno.readTextFile(app.stateFile).catch(() => "");
  return text.split("\n").filter((l) => l).map((l) => JSON.parse(l));
}

async function waitForEvent(app: App, event: string): Promise<StateEvent> {
  return await waitFor(async () => (await stateEvents(app)).find((e) => e.event === event), {
    timeoutMs: DEADLINE_MS,
    what: `"${event}" in the state file`,
  });
}

async function ping(app: App): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${app.port}/ping`);
  return res.status === 200 && await res.text() === ".";
}

async function waitUp(app: App): Promise<void> {
  await waitFor(() => ping(app), { timeoutMs: DEADLINE_MS, what: "/ping to answer" });
}

async function exitStatus(app: App): Promise<Deno.CommandStatus> {
  let status: Deno.CommandStatus | undefined;
  app.child.status.then((s) => status = s);
  return await waitFor(() => status, { timeoutMs: DEADLINE_MS, what: "the app to exit" });
}

/** Whether `pid` ignores SIGTERM, from the kernel's own record (SigIgn bit 15). */
function ignoresSigterm(pid: number): boolean {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const mask = BigInt("0x" + /^SigIgn:\s*([0-9a-f]+)$/m.exec(status)![1]);
  return (mask & (1n << 14n)) !== 0n;
}

Deno.test("normal mode answers /ping and exits 0 at once on SIGTERM", async () => {
  const app = await startApp({});
  try {
    await waitUp(app);
    app.child.kill("SIGTERM");
    assert.equal((await exitStatus(app)).code, 0);
    const events = await stateEvents(app);
    assert.deepEqual(events.map((e) => e.event), ["start", "term", "exit"]);
    assert.ok(events.every((e) => e.pid === app.child.pid));
    assert.deepEqual([events[0].mode, events[2].code], ["normal", 0]);
  } finally {
    await cleanUp(app);
  }
});

Deno.test("SIGINT stops normal mode like SIGTERM", async () => {
  const app = await startApp({});
  try {
    await waitForEvent(app, "start");
    app.child.kill("SIGINT");
    assert.equal((await exitStatus(app)).code, 0);
    assert.deepEqual((await stateEvents(app)).map((e) => e.event), ["start", "int", "exit"]);
  } finally {
    await cleanUp(app);
  }
});

Deno.test("crash-at-start exits 3 right away", async () => {
  const app = await startApp({ APP_MODE: "crash-at-start" });
  try {
    assert.equal((await exitStatus(app)).code, 3);
    assert.deepEqual((await stateEvents(app)).map((e) => e.event), ["start", "exit"]);
  } finally {
    await cleanUp(app);
  }
});

Deno.test("exit-after exits 4 once APP_EXIT_AFTER_MS has passed", async () => {
  const app = await startApp({ APP_MODE: "exit-after", APP_EXIT_AFTER_MS: "200" });
  try {
    await waitUp(app);
    assert.equal((await exitStatus(app)).code, 4);
    const [start, exit] = await stateEvents(app);
    assert.equal(exit.code, 4);
    assert.ok(exit.at - start.at >= 200, `exited after ${exit.at - start.at}ms`);
  } finally {
    await cleanUp(app);
  }
});

Deno.test("ignore-term survives SIGTERM and SIGINT", async () => {
  const app = await startApp({ APP_MODE: "ignore-term" });
  try {
    await waitUp(app);
    app.child.kill("SIGTERM");
    await waitForEvent(app, "term");
    app.child.kill("SIGINT");
    await waitForEvent(app, "int");
    assert.ok(await ping(app));
    assert.ok(processAlive(app.child.pid));
  } finally {
    await cleanUp(app);
  }
});

Deno.test("slow-stop closes its server at once and exits 0 after APP_STOP_MS", async () => {
  const app = await startApp({ APP_MODE: "slow-stop", APP_STOP_MS: "300" });
  try {
    await waitUp(app);
    app.child.kill("SIGTERM");
    await waitForEvent(app, "term");
    await waitFor(() => ping(app).then(() => false, () => true), {
      timeoutMs: DEADLINE_MS,
      what: "/ping to refuse connections",
    });
    // A second SIGTERM neither hurries nor repeats the shutdown.
    app.child.kill("SIGTERM");
    assert.equal((await exitStatus(app)).code, 0);
    const events = await stateEvents(app);
    assert.deepEqual(events.map((e) => e.event), ["start", "term", "term", "exit"]);
    assert.ok(events[3].at - events[1].at >= 300, `stopped in ${events[3].at - events[1].at}ms`);
  } finally {
    await cleanUp(app);
  }
});

Deno.test("SIGHUP and SIGUSR1 are recorded and do not stop the app", async () => {
  const app = await startApp({});
  try {
    await waitUp(app);
    app.child.kill("SIGHUP");
    await waitForEvent(app, "hup");
    app.child.kill("SIGUSR1");
    await waitForEvent(app, "usr1");
    assert.ok(await ping(app));
    assert.deepEqual((await stateEvents(app)).map((e) => e.event), ["start", "hup", "usr1"]);
  } finally {
    await cleanUp(app);
  }
});

Deno.test("grandchild pid is written and survives SIGTERM to the parent", async () => {
  const dir = await Deno.makeTempDir({ prefix: "stand-in-gc-" });
  const pidFile = `${dir}/grandchild.pid`;
  const app = await startApp({ APP_GRANDCHILD: "1", APP_GRANDCHILD_PIDFILE: pidFile }, true);
  try {
    // The pid file is written before "start", and "start" means signals are handled.
    await waitForEvent(app, "start");
    const grandchild = Number(await Deno.readTextFile(pidFile));
    assert.equal(readProcStat(grandchild)?.pgrp, app.child.pid, "stays in the app's group");
    await waitFor(() => ignoresSigterm(grandchild), {
      timeoutMs: DEADLINE_MS,
      what: "the grandchild to ignore SIGTERM",
    });
    app.child.kill("SIGTERM");
    assert.equal((await exitStatus(app)).code, 0);
    assert.ok(processAlive(grandchild));
    Deno.kill(-app.child.pid, "SIGKILL");
    await waitFor(() => !processAlive(grandchild), {
      timeoutMs: DEADLINE_MS,
      what: "the group kill to end the grandchild",
    });
  } finally {
    await cleanUp(app, true);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("processGroupMembers lists a detached child's group", async () => {
  const dir = await Deno.makeTempDir({ prefix: "stand-in-pg-" });
  const pidFile = `${dir}/grandchild.pid`;
  const app = await startApp({ APP_GRANDCHILD: "1", APP_GRANDCHILD_PIDFILE: pidFile }, true);
  try {
    // The pid file is written before "start", and "start" means signals are handled.
    await waitForEvent(app, "start");
    const grandchild = Number(await Deno.readTextFile(pidFile));
    assert.deepEqual(processGroupMembers(app.child.pid), [app.child.pid, grandchild]);
    assert.ok(!processGroupMembers(app.child.pid).includes(Deno.pid));
    Deno.kill(-app.child.pid, "SIGKILL");
    await waitFor(() => processGroupMembers(app.child.pid).length === 0, {
      timeoutMs: DEADLINE_MS,
      what: "the group to empty",
    });
  } finally {
    await cleanUp(app, true);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("process helpers parse a name containing spaces and parentheses", async () => {
  const dir = await Deno.makeTempDir({ prefix: "stand-in-comm-" });
  // A naive parse that splits at the first ")" would read state Z and group 1 here.
  const odd = `${dir}/x) Z 1 1 (y`;
  await Deno.copyFile("/bin/sleep", odd);
  await Deno.chmod(odd, 0o755);
  const child = new Deno.Command(odd, { args: ["30"], detached: true }).spawn();
  try {
    // Until the exec, the child still carries this process's name.
    const stat = await waitFor(() => {
      const stat = readProcStat(child.pid);
      return stat?.comm === "x) Z 1 1 (y" && stat;
    }, { timeoutMs: DEADLINE_MS, what: "the exec of the oddly named binary" });
    assert.deepEqual([stat.pid, stat.ppid, stat.pgrp], [child.pid, Deno.pid, child.pid]);
    assert.match(stat.state, /^[RS]$/);
    assert.ok(processAlive(child.pid));
    assert.deepEqual(processGroupMembers(child.pid), [child.pid]);
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
  assert.ok(!processAlive(child.pid));
  assert.equal(readProcStat(-1), undefined);
});

Deno.test("waitFor resolves with the probe's first truthy value", async () => {
  let calls = 0;
  const value = await waitFor(() => ++calls >= 3 && { calls }, {
    timeoutMs: DEADLINE_MS,
    intervalMs: 1,
    what: "three calls",
  });
  assert.deepEqual(value, { calls: 3 });
});

Deno.test("waitFor times out naming what it waited for and the last probe error", async () => {
  const error = await waitFor(() => {
    throw new Error("still booting");
  }, { timeoutMs: 30, what: "the thing" }).then(() => undefined, (e: Error) => e);
  assert.equal(
    error?.message,
    "timed out after 30ms waiting for the thing (last probe error: Error: still booting)",
  );
  assert.equal((error?.cause as Error).message, "still booting");
  await assert.rejects(
    () => waitFor(() => false, { timeoutMs: 30, what: "nothing" }),
    { message: "timed out after 30ms waiting for nothing" },
  );
});

Deno.test("waitFor gives up on a probe that hangs past the deadline", async () => {
  let release = () => {};
  const hang = new Promise<boolean>((resolve) => release = () => resolve(true));
  const started = Date.now();
  await assert.rejects(() => waitFor(() => hang, { timeoutMs: 50, what: "a hung probe" }), {
    message: "timed out after 50ms waiting for a hung probe",
  });
  assert.ok(Date.now() - started < DEADLINE_MS);
  release();
});

Deno.test("freePort returns a port that can be listened on", () => {
  const port = freePort();
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  listener.close();
});
