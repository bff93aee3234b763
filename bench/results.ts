/**
 * Everything one bench run measured, as plain data: what the report renders
 * and the targets are checked against.
 * @module
 */

import type { IdleResult } from "./idle.ts";
import type { LifecycleResult } from "./lifecycle.ts";
import type { PhaseLoad } from "./load.ts";
import type { Subject } from "./node.ts";
import type { Plan } from "./plan.ts";
import type { ReactionResult } from "./reaction.ts";

/** The machine the figures were taken on. */
export interface Machine {
  /** CPU model from /proc/cpuinfo. */
  cpu: string;
  cpus: number;
  os: string;
  deno: string;
  /** ISO 8601 start time of the run. */
  date: string;
}

/** What part of a figure is not the supervisor's. */
export interface Calibration {
  /** Harness spawn to app.sh's stamp, ms: included in every "app spawned" figure. */
  spawnStampMs: number[];
  /** Exec to the first line of a floor module run with the supervisor's flags, ms. */
  floorStartMs: { empty: number[]; modules: number[] };
}

/** One complete run. */
export interface BenchResults {
  plan: Plan;
  machine: Machine;
  calibration: Calibration;
  /** ours-events, ours-poll, baseline. */
  reaction: ReactionResult[];
  /** Supervisors first (ours and baseline, primary and replica), then the Deno floors. */
  idle: IdleResult[];
  lifecycle: LifecycleResult[];
  /** Machine load per phase. */
  load: PhaseLoad[];
  wallS: number;
}

/** The reaction series of `subject`. */
export function reactionOf(r: BenchResults, subject: Subject): ReactionResult {
  return found(r.reaction.find((x) => x.subject === subject), `reaction ${subject}`);
}

/** The idle figures of a supervisor in a role, or of a Deno floor module. */
export function idleOf(
  r: BenchResults,
  subject: IdleResult["subject"],
  role: IdleResult["role"] = null,
): IdleResult {
  return found(
    r.idle.find((x) => x.subject === subject && x.role === role),
    `idle ${subject} ${role ?? ""}`,
  );
}

/** The start-and-stop runs of a supervisor in a role. */
export function lifecycleOf(
  r: BenchResults,
  subject: Subject,
  role: "primary" | "replica",
): LifecycleResult {
  return found(
    r.lifecycle.find((x) => x.subject === subject && x.role === role),
    `lifecycle ${subject} ${role}`,
  );
}

/** The machine load of a phase, by name. */
export function loadOf(r: BenchResults, phase: string): PhaseLoad | undefined {
  return r.load.find((x) => x.phase === phase);
}

function found<T>(x: T | undefined, what: string): T {
  if (x === undefined) throw new Error(`no ${what} figures in the results`);
  return x;
}

/** Name of the load phase of a reaction series. */
export function reactionPhase(subject: Subject): string {
  return `reaction, ${subject}`;
}
