/**
 * Idle cost: CPU time and peak resident memory of the supervisor process
 * alone (never the app), settled as primary or as replica, over a fixed
 * window. Every subject is measured in the same window, side by side: CPU
 * time is charged per process, so they do not inflate each other's figures,
 * and one window instead of six keeps the run short.
 * @module
 */

import { type FloorProcess, startFloor } from "./calibration.ts";
import { FLOOR_VARIANTS, type FloorVariant } from "./floor.ts";
import { delay } from "./delay.ts";
import { BenchNode, lineMessage, type Subject } from "./node.ts";
import { clockTicksPerSecond, readCpuTimes, readMemory } from "./proc.ts";

/** One process's idle figures. */
export interface IdleResult {
  /** The supervisor, or a floor variant (bench/floor.ts) for Deno's share. */
  subject: Subject | `floor-${FloorVariant}`;
  role: "primary" | "replica" | null;
  windowS: number;
  /** CPU seconds per minute of the supervisor process (utime + stime). */
  cpuSecPerMin: number;
  /** Same, plus children it reaped during the window (the shell loop's `sleep`, `curl`). */
  cpuSecPerMinWithReaped: number;
  /** VmHWM at the end of the window, MB (10^6 bytes). */
  peakRssMB: number;
  /** VmRSS at the end of the window, MB. */
  rssMB: number;
  /** RssFile at the end of the window, MB: file-backed pages, mostly the executable's code. */
  fileRssMB: number;
}

/** One subject and role to idle. */
export interface IdleCase {
  subject: Subject;
  role: "primary" | "replica";
}

/**
 * Starts every case, waits until each has settled in its role, then measures
 * all of them over the same `windowMs`, together with every floor variant
 * (appended after the cases, in {@link FLOOR_VARIANTS} order).
 */
export async function measureIdle(
  cases: readonly IdleCase[],
  windowMs: number,
): Promise<IdleResult[]> {
  const tick = await clockTicksPerSecond();
  const nodes: BenchNode[] = [];
  const floors: FloorProcess[] = [];
  try {
    for (const v of FLOOR_VARIANTS) floors.push(await startFloor(v));
    for (const c of cases) {
      nodes.push(await BenchNode.create({ subject: c.subject, primary: c.role === "primary" }));
    }
    for (const n of nodes) n.launch();
    await Promise.all(nodes.map((n, i) => settled(n, cases[i].role)));
    const pids = [...nodes.map((n) => n.pid), ...floors.map((f) => f.pid)];
    const before = pids.map((pid) => readCpuTimes(pid, tick));
    const t0 = performance.now();
    await delay(windowMs);
    const windowS = (performance.now() - t0) / 1000;
    const MB = 1024 * 1024 / 1e6;
    const figures = (pid: number, i: number) => {
      const after = readCpuTimes(pid, tick);
      const mem = readMemory(pid);
      const self = after.self - before[i].self;
      const reaped = after.reapedChildren - before[i].reapedChildren;
      return {
        windowS,
        cpuSecPerMin: (self / windowS) * 60,
        cpuSecPerMinWithReaped: ((self + reaped) / windowS) * 60,
        peakRssMB: mem.peakMiB * MB,
        rssMB: mem.currentMiB * MB,
        fileRssMB: mem.fileMiB * MB,
      };
    };
    const results: IdleResult[] = nodes.map((n, i) => {
      if (n.exit) throw new Error(`${n.subject} exited during the idle window:\n${n.tail()}`);
      return { subject: cases[i].subject, role: cases[i].role, ...figures(n.pid, i) };
    });
    floors.forEach((f, i) => {
      results.push({
        subject: `floor-${f.variant}`,
        role: null,
        ...figures(f.pid, nodes.length + i),
      });
    });
    return results;
  } finally {
    await Promise.allSettled(floors.map((f) => f.stop()));
    await Promise.allSettled(nodes.map((n) => n.cleanup()));
  }
}

/**
 * Settled means the start-up work is over: as primary the app is up, the
 * register request arrived and (ours) the readiness probe has succeeded, so
 * its polling has stopped; as replica the role has been logged.
 */
async function settled(n: BenchNode, role: "primary" | "replica"): Promise<void> {
  const logged = (re: RegExp) => n.lines.some((l) => re.test(lineMessage(l.text)));
  if (role === "primary") {
    await n.until(() => n.appEvents().some((e) => e.event === "start"), "app up");
    await n.until(
      () => n.calls.some((c) => c.path.startsWith("/v1/agent/service/register")),
      "register request",
    );
    if (n.subject !== "baseline") await n.until(() => logged(/^Navidrome ready after/), "ready");
  } else {
    await n.until(() => logged(/^role "?\w+"? -> "?replica/), "replica role logged");
  }
}
