/**
 * Start-up and stop, measured on the same runs: exec to the first role
 * observation (the supervisor's own log line) and, as primary, to the app
 * spawned; then SIGTERM to the supervisor's exit with an app that stops
 * promptly, and the supervisor's own share of that time.
 * @module
 */

import { randomDelay } from "./delay.ts";
import { type AppEvent, BenchNode, lineMessage, type OutputLine, type Subject } from "./node.ts";

/** One start-and-stop run, times in milliseconds. */
export interface LifecycleRun {
  /** Exec to the first line naming any role (ours first says `unknown` until it has read LiteFS). */
  firstRoleLine: number;
  /** Exec to the first line naming `primary` or `replica`. */
  firstRole: number;
  /** Exec to the app spawned (primary only). */
  appSpawned: number | null;
  /** SIGTERM to the supervisor's exit, as the harness saw it. */
  stopTotal: number;
  /** The app's own stop time: its `term` to its `exit` (primary only). */
  appStop: number | null;
  /** SIGTERM at the supervisor to SIGTERM at the app (primary only). */
  signalToApp: number | null;
  /** stopTotal minus appStop. */
  supervisorShare: number;
  exitCode: number;
}

/** All runs of one subject and role. */
export interface LifecycleResult {
  subject: Subject;
  role: "primary" | "replica";
  runs: LifecycleRun[];
  /** Runs that failed a deadline (reported, never fatal). */
  lost: number;
  /** Runs discarded to warm the file cache (module loading from DENO_DIR). */
  warmups: number;
}

/** Options of {@link measureLifecycle}. */
export interface LifecycleOptions {
  subject: Subject;
  role: "primary" | "replica";
  runs: number;
  /**
   * Upper bound of the random pause between settling and SIGTERM: spreads
   * the signal over the shell loop's `sleep 1`, during which bash holds a
   * trapped signal until the sleep ends.
   */
  phaseSpreadMs: number;
  timeoutMs?: number;
}

const ROLE_LINE = /^role "?(\w+)"? -> "?(\w+)"?/;

/** Starts and stops one subject `runs` times (after one discarded warm-up run). */
export async function measureLifecycle(opts: LifecycleOptions): Promise<LifecycleResult> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const primary = opts.role === "primary";
  const node = await BenchNode.create({ subject: opts.subject, primary });
  const runs: LifecycleRun[] = [];
  // The first run reads the modules from disk into the page cache; production
  // starts once per container, usually warm from the image layer.
  const warmups = 1;
  let lost = 0;
  try {
    for (let i = 0; i < warmups + opts.runs; i++) {
      try {
        const run = await once(node, primary, opts.phaseSpreadMs, timeoutMs);
        if (i >= warmups) runs.push(run);
      } catch (e) {
        // Counted and reported, never fatal: a slow CI machine must not fail the run.
        if (i >= warmups) lost++;
        console.error(`  lost run ${i + 1}: ${(e as Error).message.split("\n")[0]}`);
        await node.kill();
      }
    }
  } finally {
    await node.cleanup();
  }
  return { subject: opts.subject, role: opts.role, runs, lost, warmups };
}

async function once(
  node: BenchNode,
  primary: boolean,
  phaseSpreadMs: number,
  timeoutMs: number,
): Promise<LifecycleRun> {
  const line0 = node.lines.length;
  const ev0 = node.appEvents().length;
  const call0 = node.calls.length;
  const t0 = node.launch();
  const roleLine = (definite: boolean) => (l: OutputLine) => {
    const m = ROLE_LINE.exec(lineMessage(l.text));
    return m !== null && (!definite || m[2] === "primary" || m[2] === "replica");
  };
  const stamp = (l: OutputLine) => (l.stampedAt ?? l.arrivedAt) - t0;
  const wantRole = primary ? "primary" : "replica";
  const first = await node.until(
    () => node.lines.slice(line0).find(roleLine(true)),
    `first ${wantRole} role line`,
    timeoutMs,
  );
  const firstAny = node.lines.slice(line0).find(roleLine(false))!;
  let spawn: AppEvent | null = null;
  if (primary) {
    spawn = await node.until(
      () => node.appEvents().slice(ev0).find((e) => e.event === "spawn"),
      "app spawned",
      timeoutMs,
    );
    const pid = spawn.pid;
    await node.until(
      () => node.appEvents().slice(ev0).some((e) => e.event === "start" && e.pid === pid),
      "app up",
      timeoutMs,
    );
    await node.until(
      () => node.calls.slice(call0).some((c) => c.path.startsWith("/v1/agent/service/register")),
      "register request",
      timeoutMs,
    );
  }
  await randomDelay(phaseSpreadMs);
  const ev1 = node.appEvents().length;
  const t1 = node.terminate();
  const exit = await node.waitExit(timeoutMs);
  let appStop: number | null = null;
  let signalToApp: number | null = null;
  if (primary) {
    const term = await node.until(
      () => node.appEvents().slice(ev1).find((e) => e.event === "term"),
      "app's SIGTERM record",
      timeoutMs,
    );
    const appExit = await node.until(
      () => node.appEvents().slice(ev1).find((e) => e.event === "exit" && e.pid === term.pid),
      "app's exit record",
      timeoutMs,
    );
    appStop = appExit.at - term.at;
    signalToApp = term.at - t1;
  }
  await node.kill();
  const stopTotal = exit.at - t1;
  return {
    firstRoleLine: stamp(firstAny),
    firstRole: stamp(first),
    appSpawned: spawn ? spawn.at - t0 : null,
    stopTotal,
    appStop,
    signalToApp,
    supervisorShare: stopTotal - (appStop ?? 0),
    exitCode: exit.status.code,
  };
}
