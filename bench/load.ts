/**
 * How busy the machine was while a phase ran, split into the bench's own
 * share and everyone else's, so RESULTS.md can say whether its figures were
 * taken on a quiet machine. Read from `/proc/stat` (all CPUs) and from the
 * harness's own `/proc/self/stat`, whose reaped-children times include every
 * supervisor, app and floor module once they have been waited for.
 * @module
 */

import { readCpuTimes } from "./proc.ts";

/** One reading of the machine's and the bench's CPU time. */
export interface LoadSample {
  /** `performance.now()` of the reading, ms. */
  at: number;
  /** Non-idle CPU seconds of the whole machine since boot, all CPUs together. */
  machineBusyS: number;
  /** CPU seconds of the harness and every descendant it has reaped. */
  benchS: number;
}

/** What a phase cost the machine. */
export interface PhaseLoad {
  phase: string;
  wallS: number;
  /** Cores kept busy on average by the bench itself (harness and reaped descendants). */
  benchCores: number;
  /** Cores kept busy on average by everything else on the machine. */
  otherCores: number;
}

/**
 * Reads `/proc/stat`'s `cpu` line and the harness's own times. `guest` is
 * already counted in `user`, and `idle` plus `iowait` is time nobody ran.
 */
export function sampleLoad(ticksPerSecond: number): LoadSample {
  const line = Deno.readTextFileSync("/proc/stat").split("\n").find((l) => l.startsWith("cpu "));
  if (!line) throw new Error("/proc/stat has no cpu line");
  const [user, nice, system, _idle, _iowait, irq, softirq, steal] = line.trim().split(/\s+/)
    .slice(1).map(Number);
  const own = readCpuTimes(Deno.pid, ticksPerSecond);
  return {
    at: performance.now(),
    machineBusyS: (user + nice + system + irq + softirq + (steal || 0)) / ticksPerSecond,
    benchS: own.self + own.reapedChildren,
  };
}

/** The load between two readings taken around a phase (after its processes were reaped). */
export function phaseLoad(phase: string, before: LoadSample, after: LoadSample): PhaseLoad {
  const wallS = (after.at - before.at) / 1000;
  const bench = after.benchS - before.benchS;
  const machine = after.machineBusyS - before.machineBusyS;
  return {
    phase,
    wallS,
    benchCores: bench / wallS,
    otherCores: Math.max(0, machine - bench) / wallS,
  };
}
