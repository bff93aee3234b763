/**
 * The decision core: given what is (role, child, Consul, shutdown) and a small
 * memory of past decisions, returns the idempotent actions that close the gap
 * to what should be. Pure — no clock, no I/O — so every ordering rule, backoff
 * and give-up is tested as plain data. Level-triggered: calling it again with
 * the same observation repeats nothing that is already under way.
 * @module
 */

import type { Role } from "./role.ts";

/** How a finished child ended. `seq` increases by one per exit. */
export interface ExitRecord {
  seq: number;
  at: number;
  startedAt: number;
  code: number | null;
  signal: string | null;
  /** True when the supervisor asked it to stop. */
  requested: boolean;
  /** When the supervisor asked it to stop, if it did. */
  stopAskedAt?: number;
  /** It outlived the stop timeout and was killed with SIGKILL. */
  escalated?: boolean;
  /** Set when the process could not even be spawned. */
  spawnError?: string;
}

/** The child process group as observed now. */
export interface ChildObservation {
  phase: "idle" | "running" | "stopping";
  pid: number | null;
  startedAt: number | null;
  lastExit: ExitRecord | null;
}

/** The two Consul registrations a node may hold. */
export type SlotName = "primary" | "replica";

/** One Consul registration as last observed through the agent. */
export interface SlotObservation {
  /** What the agent holds, as far as we know; unknown until the first answer. */
  state: "registered" | "absent" | "unknown";
  /** A request for this slot is under way. */
  inflight: boolean;
  /** When the last request failed; null when the last request succeeded. */
  failedAt: number | null;
  /** Consecutive failed requests. */
  failures: number;
  /** The last failure is one the agent will repeat (ACL denied, bad request). */
  slowRetry: boolean;
  lastPassAt: number | null;
  lastSyncAt: number | null;
}

/** A slot nobody has asked the agent about yet, in the given state. */
export function newSlot(state: SlotObservation["state"]): SlotObservation {
  return {
    state,
    inflight: false,
    failedAt: null,
    failures: 0,
    slowRetry: false,
    lastPassAt: null,
    lastSyncAt: null,
  };
}

/** Everything a cycle looks at. */
export interface Observation {
  now: number;
  role: Role;
  /** When the role's kind last changed. */
  roleSince: number;
  child: ChildObservation;
  /**
   * The running child has answered the health URL since it started. Only a
   * ready child is registered, so the registration can start out passing
   * instead of failing until Consul's first HTTP probe (up to one interval).
   */
  ready: boolean;
  /** Null when Consul registration is disabled. */
  consul: Record<SlotName, SlotObservation> | null;
  /** A stop was asked for: by a signal, or (`failure`) by an internal error. */
  shutdown: null | { kind: "graceful" | "immediate"; at: number; failure?: boolean };
}

/** The policy knobs the core needs (from config, plus fixed constants). */
export interface Policy {
  unknownGraceMs: number;
  restartDelayMs: number;
  restartDelayMaxMs: number;
  stableAfterMs: number;
  maxFailures: number;
  ttlMs: number;
  syncIntervalMs: number;
  consulRetryMinMs: number;
  consulRetryMaxMs: number;
  /** Longest a stop waits for the deregister it follows. */
  deregisterBudgetMs: number;
  /** Replicas register under their own service name. */
  replicaSlot: boolean;
}

/** What the core remembers between cycles (policy state only, never world state). */
export interface Memory {
  /** Consecutive unexpected exits. */
  failures: number;
  /** No start before this time (restart backoff). */
  nextStartAt: number;
  /** The newest exit already accounted for. */
  handledExitSeq: number;
  /** When the crash-loop give-up began, or null. */
  gaveUpAt: number | null;
  /** When the running child first became unwanted (opens the deregister-first window). */
  stopWantedSince: number | null;
}

/** The memory of a fresh supervisor. */
export const INITIAL_MEMORY: Memory = {
  failures: 0,
  nextStartAt: 0,
  handledExitSeq: 0,
  gaveUpAt: null,
  stopWantedSince: null,
};

/** Exit codes, documented in the README. */
export const EXIT = {
  /** Clean stop after a signal. */
  ok: 0,
  /** A runtime failure outside the policy (e.g. an internal error). */
  failure: 1,
  /** Navidrome kept crashing; exiting makes LiteFS release the lease. */
  crashLoop: 75,
  /** Invalid configuration or command line; nothing was started. */
  config: 78,
  /** A second signal: the process group was killed without waiting. */
  forced: 130,
} as const;

/** An effect the shell carries out, or a fact it reports. */
export type Action =
  | { type: "start" }
  | { type: "stop"; reason: string }
  | { type: "kill" }
  | { type: "register"; slot: SlotName }
  | { type: "deregister"; slot: SlotName }
  | { type: "pass"; slot: SlotName }
  | { type: "sync"; slot: SlotName }
  | { type: "restartScheduled"; exit: ExitRecord; failures: number; delayMs: number }
  | { type: "gaveUp"; exit: ExitRecord; failures: number }
  | { type: "exit"; code: number; reason: string };

/** The outcome of one cycle. */
export interface Decision {
  actions: Action[];
  memory: Memory;
  /** When the core next needs a look even if nothing happens; null = only on events. */
  wakeAt: number | null;
  /** True when the world matches what the role asks for and nothing is under way. */
  converged: boolean;
}

type Desire = "present" | "absent" | "hold";

/** One cycle of the decision core. */
export function decide(obs: Observation, mem: Memory, p: Policy): Decision {
  const { now, child, role } = obs;
  const actions: Action[] = [];
  const m: Memory = { ...mem };
  const wakes: number[] = [];

  if (obs.shutdown?.kind === "immediate") {
    if (child.phase !== "idle") actions.push({ type: "kill" });
    actions.push({ type: "exit", code: EXIT.forced, reason: "second signal" });
    return { actions, memory: m, wakeAt: null, converged: false };
  }

  accountForExit(child.lastExit, m, p, actions);

  const stopAt = obs.shutdown?.at ?? m.gaveUpAt;
  const stopping = stopAt !== null;
  const unknownGraceEnds = obs.roleSince + p.unknownGraceMs;
  const inGrace = role.kind === "unknown" && child.phase === "running" && now < unknownGraceEnds;
  const wantChild = !stopping && (role.kind === "primary" || inGrace);
  if (inGrace && !stopping) wakes.push(unknownGraceEnds);

  const desire: Record<SlotName, Desire> = {
    primary: stopping
      ? "absent"
      : role.kind === "primary" && child.phase === "running"
      ? obs.ready ? "present" : "hold"
      : inGrace
      ? "hold"
      : "absent",
    replica: !p.replicaSlot || stopping
      ? "absent"
      : role.kind === "replica"
      ? "present"
      : role.kind === "unknown"
      ? "hold"
      : "absent",
  };

  // Deregister first, then stop: the stop waits until the agent forgot us, the
  // deregister failed, or the budget ran out — Consul never holds Navidrome long.
  // "Absent" counts only with nothing in flight: a register sent just before the
  // demotion would otherwise land while the child is already being stopped.
  if (child.phase === "running" && !wantChild) {
    m.stopWantedSince ??= now;
    const slot = obs.consul?.primary;
    const budgetEnds = m.stopWantedSince + p.deregisterBudgetMs;
    const gateOpen = !slot || (slot.state === "absent" && !slot.inflight) ||
      (slot.failedAt !== null && slot.failedAt >= m.stopWantedSince) || now >= budgetEnds;
    if (gateOpen) {
      actions.push({ type: "stop", reason: stopReason(obs, m) });
    } else {
      wakes.push(budgetEnds);
    }
  } else if (child.phase === "idle") {
    m.stopWantedSince = null;
  }

  let startPending = false;
  if (child.phase === "idle" && wantChild) {
    if (now >= m.nextStartAt) actions.push({ type: "start" });
    else wakes.push(m.nextStartAt);
    startPending = true;
  }

  let consulPending = false;
  if (obs.consul) {
    for (const name of ["primary", "replica"] as const) {
      const s = obs.consul[name];
      const urgentSince = stopAt ?? (name === "primary" ? m.stopWantedSince : null);
      const r = reconcileSlot(name, s, desire[name], now, urgentSince, p);
      if (r.action) actions.push(r.action);
      if (r.wakeAt !== null) wakes.push(r.wakeAt);
      const awaitingReady = name === "primary" && wantChild && role.kind === "primary" &&
        !obs.ready;
      if (
        s.inflight || r.action || awaitingReady ||
        (desire[name] !== "hold" && !matches(s, desire[name]))
      ) {
        consulPending = true;
      }
    }
  }

  if (stopping && child.phase === "idle") {
    const budgetEnds = stopAt + p.deregisterBudgetMs;
    const settled = !obs.consul ||
      (["primary", "replica"] as const).every((n) => slotSettled(obs.consul![n], stopAt)) ||
      now >= budgetEnds;
    if (settled) {
      const gaveUp = obs.shutdown === null;
      const failed = obs.shutdown?.failure === true;
      actions.push({
        type: "exit",
        code: gaveUp ? EXIT.crashLoop : failed ? EXIT.failure : EXIT.ok,
        reason: gaveUp ? "Navidrome kept failing" : failed ? "internal error" : "stopped by signal",
      });
    } else {
      wakes.push(budgetEnds);
    }
  }

  const converged = !startPending && !consulPending && child.phase !== "stopping" &&
    !actions.some((a) => a.type === "stop") && (child.phase === "running") === wantChild;
  return {
    actions,
    memory: m,
    wakeAt: wakes.length > 0 ? Math.min(...wakes) : null,
    converged,
  };
}

function accountForExit(ex: ExitRecord | null, m: Memory, p: Policy, actions: Action[]): void {
  if (!ex || ex.seq <= m.handledExitSeq) return;
  m.handledExitSeq = ex.seq;
  if (ex.requested) return;
  const ran = ex.at - ex.startedAt;
  m.failures = ran >= p.stableAfterMs ? 1 : m.failures + 1;
  if (m.failures >= p.maxFailures) {
    m.gaveUpAt ??= ex.at;
    actions.push({ type: "gaveUp", exit: ex, failures: m.failures });
    return;
  }
  const delayMs = restartDelay(m.failures, p);
  m.nextStartAt = ex.at + delayMs;
  actions.push({ type: "restartScheduled", exit: ex, failures: m.failures, delayMs });
}

/** Restart delay after the n-th consecutive failure: doubling from the base, capped. */
export function restartDelay(failures: number, p: Policy): number {
  return Math.min(p.restartDelayMaxMs, p.restartDelayMs * 2 ** Math.max(0, failures - 1));
}

/**
 * Delay before retrying a failed Consul request. A transient failure is
 * retried at least every third of the TTL, so once the agent recovers the
 * TTL check is passed again before it can expire; one the agent will repeat
 * (ACL denied, bad request) is retried at the slow cap.
 */
export function consulRetryDelay(s: SlotObservation, p: Policy): number {
  if (s.slowRetry) return p.consulRetryMaxMs;
  const cap = Math.min(p.consulRetryMaxMs, p.ttlMs / 3);
  return Math.min(cap, p.consulRetryMinMs * 2 ** Math.max(0, s.failures - 1));
}

function reconcileSlot(
  name: SlotName,
  s: SlotObservation,
  desire: Desire,
  now: number,
  urgentSince: number | null,
  p: Policy,
): { action: Action | null; wakeAt: number | null } {
  if (s.inflight || desire === "hold") return { action: null, wakeAt: null };
  if (s.failedAt !== null) {
    // A demotion or shutdown gets one immediate attempt even while backing off.
    const urgent = desire === "absent" && urgentSince !== null && s.failedAt < urgentSince;
    const retryAt = s.failedAt + consulRetryDelay(s, p);
    if (!urgent && now < retryAt) return { action: null, wakeAt: retryAt };
  }
  if (desire === "absent") {
    return {
      action: s.state === "absent" ? null : { type: "deregister", slot: name },
      wakeAt: null,
    };
  }
  if (s.state !== "registered") return { action: { type: "register", slot: name }, wakeAt: null };
  const passDue = (s.lastPassAt ?? -Infinity) + p.ttlMs / 3;
  if (now >= passDue) return { action: { type: "pass", slot: name }, wakeAt: null };
  const syncDue = (s.lastSyncAt ?? -Infinity) + p.syncIntervalMs;
  if (now >= syncDue) return { action: { type: "sync", slot: name }, wakeAt: null };
  return { action: null, wakeAt: Math.min(passDue, syncDue) };
}

function matches(s: SlotObservation, desire: Desire): boolean {
  return desire === "present" ? s.state === "registered" : s.state === "absent";
}

function slotSettled(s: SlotObservation, since: number): boolean {
  return !s.inflight && (s.state === "absent" || (s.failedAt !== null && s.failedAt >= since));
}

function stopReason(obs: Observation, m: Memory): string {
  if (obs.shutdown) return obs.shutdown.failure ? "internal error" : "shutdown";
  if (m.gaveUpAt !== null) return "crash loop";
  if (obs.role.kind === "unknown") return "role unknown beyond grace";
  return `demoted: ${obs.role.reason}`;
}
