import { assert, assertEquals } from "./support/assert.ts";
import {
  type Action,
  type ChildObservation,
  decide,
  type Decision,
  EXIT,
  INITIAL_MEMORY,
  type Memory,
  newSlot,
  type Observation,
  type Policy,
  restartDelay,
  type SlotObservation,
} from "../lib/decide.ts";
import type { Role } from "../lib/role.ts";

const policy: Policy = {
  unknownGraceMs: 5000,
  restartDelayMs: 1000,
  restartDelayMaxMs: 30_000,
  stableAfterMs: 60_000,
  maxFailures: 5,
  ttlMs: 15_000,
  syncIntervalMs: 30_000,
  consulRetryMinMs: 500,
  consulRetryMaxMs: 30_000,
  deregisterBudgetMs: 1000,
  replicaSlot: false,
};

const PRIMARY: Role = { kind: "primary", primary: null, reason: "api" };
const REPLICA: Role = { kind: "replica", primary: "node-b", reason: ".primary" };
const UNKNOWN: Role = { kind: "unknown", primary: null, reason: "api unreachable" };

const idle: ChildObservation = { phase: "idle", pid: null, startedAt: null, lastExit: null };
const running = (startedAt = 0): ChildObservation => ({
  phase: "running",
  pid: 42,
  startedAt,
  lastExit: null,
});

function slot(over: Partial<SlotObservation> = {}): SlotObservation {
  return { ...newSlot("absent"), ...over };
}

function obs(over: Partial<Observation> = {}): Observation {
  return {
    now: 10_000,
    role: PRIMARY,
    roleSince: 0,
    child: idle,
    ready: true,
    consul: { primary: slot(), replica: slot() },
    shutdown: null,
    ...over,
  };
}

/** A node just demoted while its child runs, with the primary registration as given. */
const demoted = (primary: SlotObservation, now = 10_000): Observation =>
  obs({ now, role: REPLICA, child: running(), consul: { primary, replica: slot() } });

const types = (d: Decision) =>
  d.actions.map((a) =>
    a.type === "register" || a.type === "deregister" || a.type === "pass" || a.type === "sync"
      ? `${a.type}:${a.slot}`
      : a.type
  );

function run(o: Observation, mem: Memory = INITIAL_MEMORY, p: Policy = policy): Decision {
  return decide(o, mem, p);
}

Deno.test("starts the child when primary and idle", () => {
  assertEquals(types(run(obs())), ["start"]);
});

Deno.test("never starts the child while the role is unknown", () => {
  assertEquals(types(run(obs({ role: UNKNOWN }))), []);
});

Deno.test("never starts the child on a replica", () => {
  const d = run(obs({ role: REPLICA, consul: { primary: slot(), replica: slot() } }));
  assertEquals(d.actions, []);
});

Deno.test("registers after the child is running and ready, not before", () => {
  assertEquals(types(run(obs({ child: idle, ready: false }))), ["start"]);
  const starting = run(obs({ child: running(), ready: false }));
  assertEquals(types(starting), []);
  assertEquals(starting.converged, false);
  assertEquals(types(run(obs({ child: running() }))), ["register:primary"]);
});

Deno.test("keeps a registration it finds while the new child is not ready yet", () => {
  const held = slot({ state: "unknown" });
  const d = run(
    obs({ child: running(), ready: false, consul: { primary: held, replica: slot() } }),
  );
  assertEquals(types(d), []);
});

Deno.test("Consul being down does not delay the start", () => {
  const failing = slot({ state: "unknown", failedAt: 9_999, failures: 7 });
  assertEquals(types(run(obs({ consul: { primary: failing, replica: slot() } }))), ["start"]);
});

Deno.test("demotes by deregistering before stopping the child", () => {
  const registered = slot({ state: "registered", lastPassAt: 9000, lastSyncAt: 9000 });
  const first = run(
    demoted(registered),
  );
  assertEquals(types(first), ["deregister:primary"]);
  assertEquals(first.wakeAt, 10_000 + policy.deregisterBudgetMs);
  const inflight = run(
    demoted({ ...registered, inflight: true }),
    first.memory,
  );
  assertEquals(types(inflight), []);
  const done = run(
    demoted(slot(), 10_005),
    first.memory,
  );
  assertEquals(types(done), ["stop"]);
});

Deno.test("a register in flight at the demotion holds the stop until the deregister", () => {
  // The agent may already hold the registration the in-flight request carries.
  const registering = slot({ state: "absent", inflight: true });
  const first = run(
    demoted(registering),
  );
  assertEquals(types(first), []);
  const landed = slot({ state: "registered" });
  const next = run(
    demoted(landed, 10_002),
    first.memory,
  );
  assertEquals(types(next), ["deregister:primary"]);
  const gone = run(
    demoted(slot(), 10_004),
    next.memory,
  );
  assertEquals(types(gone), ["stop"]);
});

Deno.test("a failed deregister does not hold the stop", () => {
  const registered = slot({ state: "registered", lastPassAt: 9000, lastSyncAt: 9000 });
  const first = run(
    demoted(registered),
  );
  const failed = slot({ state: "registered", failedAt: 10_002, failures: 1 });
  const d = run(
    demoted(failed, 10_003),
    first.memory,
  );
  assertEquals(types(d), ["stop"]);
});

Deno.test("a hung deregister holds the stop for at most the budget", () => {
  const hung = slot({ state: "registered", inflight: true });
  const first = run(
    demoted(hung),
  );
  assertEquals(types(first), []);
  const late = run(
    obs({
      now: 10_000 + policy.deregisterBudgetMs,
      role: REPLICA,
      child: running(),
      consul: { primary: hung, replica: slot() },
    }),
    first.memory,
  );
  assertEquals(types(late), ["stop"]);
});

Deno.test("with Consul disabled a demotion stops at once", () => {
  assertEquals(types(run(obs({ role: REPLICA, child: running(), consul: null }))), ["stop"]);
});

Deno.test("an unknown role keeps a running child for the grace, then stops it", () => {
  const registered = slot({ state: "registered", lastPassAt: 9_000, lastSyncAt: 9_000 });
  const within = run(
    obs({
      now: 4_000,
      role: UNKNOWN,
      roleSince: 1_000,
      child: running(),
      consul: { primary: registered, replica: slot() },
    }),
  );
  assertEquals(types(within), []);
  assertEquals(within.wakeAt, 1_000 + policy.unknownGraceMs);
  const after = run(
    obs({
      now: 6_000,
      role: UNKNOWN,
      roleSince: 1_000,
      child: running(),
      consul: { primary: registered, replica: slot() },
    }),
  );
  assertEquals(types(after), ["deregister:primary"]);
});

Deno.test("does not pass the TTL check while the role is unknown", () => {
  const stale = slot({ state: "registered", lastPassAt: 0, lastSyncAt: 0 });
  const d = run(
    obs({
      now: 3_000,
      role: UNKNOWN,
      roleSince: 1_000,
      child: running(),
      consul: { primary: stale, replica: slot() },
    }),
  );
  assertEquals(types(d), []);
});

Deno.test("passes the TTL check every third of the TTL while primary", () => {
  const reg = slot({ state: "registered", lastPassAt: 10_000 - 5_000, lastSyncAt: 10_000 });
  assertEquals(types(run(obs({ child: running(), consul: { primary: reg, replica: slot() } }))), [
    "pass:primary",
  ]);
  const fresh = slot({ state: "registered", lastPassAt: 9_000, lastSyncAt: 10_000 });
  const d = run(obs({ child: running(), consul: { primary: fresh, replica: slot() } }));
  assertEquals(types(d), []);
  assertEquals(d.wakeAt, 9_000 + 5_000);
});

Deno.test("reads the registration back every sync interval", () => {
  const reg = slot({ state: "registered", lastPassAt: 10_000, lastSyncAt: 10_000 - 30_000 });
  assertEquals(types(run(obs({ child: running(), consul: { primary: reg, replica: slot() } }))), [
    "sync:primary",
  ]);
});

Deno.test("re-registers when the agent lost the service", () => {
  const lost = slot({ state: "absent", lastPassAt: 9_000, lastSyncAt: 10_000 });
  assertEquals(types(run(obs({ child: running(), consul: { primary: lost, replica: slot() } }))), [
    "register:primary",
  ]);
});

Deno.test("removes a stale registration at start-up when not primary", () => {
  const d = run(
    obs({ role: REPLICA, consul: { primary: slot({ state: "unknown" }), replica: slot() } }),
  );
  assertEquals(types(d), ["deregister:primary"]);
});

Deno.test("retries a failed register with exponential backoff capped at a third of the TTL", () => {
  const failed = (failures: number) => slot({ state: "unknown", failedAt: 10_000, failures });
  const d1 = run(obs({ child: running(), consul: { primary: failed(1), replica: slot() } }));
  assertEquals(types(d1), []);
  assertEquals(d1.wakeAt, 10_500);
  const d3 = run(obs({ child: running(), consul: { primary: failed(3), replica: slot() } }));
  assertEquals(d3.wakeAt, 12_000);
  const d20 = run(obs({ child: running(), consul: { primary: failed(20), replica: slot() } }));
  // TTL 15 s: a retry every 5 s passes the check again before it can expire.
  assertEquals(d20.wakeAt, 10_000 + policy.ttlMs / 3);
  const later = run(
    obs({ now: 10_500, child: running(), consul: { primary: failed(1), replica: slot() } }),
  );
  assertEquals(types(later), ["register:primary"]);
});

Deno.test("retries a denied request slowly", () => {
  const denied = slot({ state: "unknown", failedAt: 10_000, failures: 1, slowRetry: true });
  assertEquals(
    run(obs({ child: running(), consul: { primary: denied, replica: slot() } })).wakeAt,
    40_000,
  );
});

Deno.test("a demotion deregisters at once even while backing off", () => {
  const backingOff = slot({ state: "registered", failedAt: 9_900, failures: 4 });
  const d = run(
    demoted(backingOff),
  );
  assertEquals(types(d), ["deregister:primary"]);
});

Deno.test("restarts an unexpectedly exited child after a doubling delay", () => {
  let mem: Memory = INITIAL_MEMORY;
  for (let n = 1; n <= 4; n++) {
    const exit = { seq: n, at: 10_000, startedAt: 9_000, code: 1, signal: null, requested: false };
    const d = run(obs({ child: { ...idle, lastExit: exit } }), mem);
    const sched = d.actions.find((a) => a.type === "restartScheduled") as Extract<
      Action,
      { type: "restartScheduled" }
    >;
    assertEquals(sched.delayMs, 1000 * 2 ** (n - 1));
    assertEquals(sched.failures, n);
    assert(!d.actions.some((a) => a.type === "start"), "must wait for the delay");
    assertEquals(d.wakeAt, 10_000 + sched.delayMs);
    mem = d.memory;
  }
  assertEquals(restartDelay(10, policy), 30_000);
});

Deno.test("starts again once the restart delay has passed", () => {
  const exit = { seq: 1, at: 10_000, startedAt: 9_000, code: 1, signal: null, requested: false };
  const d = run(obs({ child: { ...idle, lastExit: exit } }));
  assertEquals(types(run(obs({ now: 11_000, child: { ...idle, lastExit: exit } }), d.memory)), [
    "start",
  ]);
});

Deno.test("a stable run resets the failure count", () => {
  const mem: Memory = { ...INITIAL_MEMORY, failures: 4, handledExitSeq: 4 };
  const exit = {
    seq: 5,
    at: 100_000,
    startedAt: 100_000 - 60_000,
    code: 1,
    signal: null,
    requested: false,
  };
  const d = run(obs({ now: 100_000, child: { ...idle, lastExit: exit } }), mem);
  assertEquals(d.memory.failures, 1);
  assertEquals(d.memory.gaveUpAt, null);
});

Deno.test("gives up after the maximum consecutive failures, deregisters and exits 75", () => {
  const mem: Memory = { ...INITIAL_MEMORY, failures: 4, handledExitSeq: 4 };
  const exit = {
    seq: 5,
    at: 10_000,
    startedAt: 9_000,
    code: null,
    signal: "SIGSEGV",
    requested: false,
  };
  const reg = slot({ state: "registered" });
  const d = run(
    obs({ child: { ...idle, lastExit: exit }, consul: { primary: reg, replica: slot() } }),
    mem,
  );
  assertEquals(types(d), ["gaveUp", "deregister:primary"]);
  const done = run(obs({ now: 10_010, child: { ...idle, lastExit: exit } }), d.memory);
  assertEquals(done.actions, [{
    type: "exit",
    code: EXIT.crashLoop,
    reason: "Navidrome kept failing",
  }]);
});

Deno.test("a requested exit is not a failure", () => {
  const exit = { seq: 1, at: 10_000, startedAt: 9_000, code: 143, signal: null, requested: true };
  const d = run(obs({ role: REPLICA, child: { ...idle, lastExit: exit } }));
  assertEquals(d.memory.failures, 0);
  assertEquals(d.actions, []);
});

Deno.test("shutdown deregisters, then stops the child, then exits 0", () => {
  const shutdown = { kind: "graceful" as const, at: 10_000 };
  const reg = slot({ state: "registered", lastPassAt: 10_000, lastSyncAt: 10_000 });
  const d1 = run(obs({ child: running(), shutdown, consul: { primary: reg, replica: slot() } }));
  assertEquals(types(d1), ["deregister:primary"]);
  const d2 = run(obs({ now: 10_004, child: running(), shutdown }), d1.memory);
  assertEquals(types(d2), ["stop"]);
  const d3 = run(
    obs({ now: 10_004, child: { ...running(), phase: "stopping" }, shutdown }),
    d2.memory,
  );
  assertEquals(types(d3), []);
  const exit = { seq: 1, at: 10_300, startedAt: 0, code: 0, signal: null, requested: true };
  const d4 = run(obs({ now: 10_300, child: { ...idle, lastExit: exit }, shutdown }), d3.memory);
  assertEquals(d4.actions, [{ type: "exit", code: EXIT.ok, reason: "stopped by signal" }]);
});

Deno.test("an internal-error stop deregisters and stops like a signal, then exits 1", () => {
  const shutdown = { kind: "graceful" as const, at: 10_000, failure: true };
  const reg = slot({ state: "registered", lastPassAt: 10_000, lastSyncAt: 10_000 });
  const d1 = run(obs({ child: running(), shutdown, consul: { primary: reg, replica: slot() } }));
  assertEquals(types(d1), ["deregister:primary"]);
  const d2 = run(obs({ now: 10_004, child: running(), shutdown }), d1.memory);
  assertEquals(d2.actions, [{ type: "stop", reason: "internal error" }]);
  const exit = { seq: 1, at: 10_300, startedAt: 0, code: 0, signal: null, requested: true };
  const d3 = run(obs({ now: 10_300, child: { ...idle, lastExit: exit }, shutdown }), d2.memory);
  assertEquals(d3.actions, [{ type: "exit", code: EXIT.failure, reason: "internal error" }]);
});

Deno.test("shutdown with Consul down still exits once the child is gone", () => {
  const shutdown = { kind: "graceful" as const, at: 10_000 };
  const down = slot({ state: "registered", failedAt: 10_001, failures: 1 });
  const d = run(
    obs({ now: 10_002, role: REPLICA, shutdown, consul: { primary: down, replica: slot() } }),
  );
  assertEquals(d.actions.map((a) => a.type), ["exit"]);
});

Deno.test("shutdown waits for an in-flight deregister only up to the budget", () => {
  const shutdown = { kind: "graceful" as const, at: 10_000 };
  const hung = slot({ state: "registered", inflight: true });
  const d = run(
    obs({ now: 10_100, role: REPLICA, shutdown, consul: { primary: hung, replica: slot() } }),
  );
  assertEquals(d.actions, []);
  assertEquals(d.wakeAt, 11_000);
  const late = run(
    obs({ now: 11_000, role: REPLICA, shutdown, consul: { primary: hung, replica: slot() } }),
  );
  assertEquals(late.actions.map((a) => a.type), ["exit"]);
});

Deno.test("a second signal kills the group and exits at once", () => {
  const d = run(obs({ child: running(), shutdown: { kind: "immediate", at: 10_000 } }));
  assertEquals(d.actions, [{ type: "kill" }, {
    type: "exit",
    code: EXIT.forced,
    reason: "second signal",
  }]);
});

Deno.test("never starts a child during shutdown", () => {
  const d = run(obs({ role: PRIMARY, shutdown: { kind: "graceful", at: 10_000 }, consul: null }));
  assertEquals(d.actions.map((a) => a.type), ["exit"]);
});

Deno.test("replicas register under the replica name only when enabled", () => {
  const p = { ...policy, replicaSlot: true };
  const d = run(
    obs({ role: REPLICA, consul: { primary: slot(), replica: slot() } }),
    INITIAL_MEMORY,
    p,
  );
  assertEquals(types(d), ["register:replica"]);
  const off = run(obs({ role: REPLICA, consul: { primary: slot(), replica: slot() } }));
  assertEquals(types(off), []);
});

Deno.test("a promoted replica drops its replica registration", () => {
  const p = { ...policy, replicaSlot: true };
  const reg = slot({ state: "registered", lastPassAt: 10_000, lastSyncAt: 10_000 });
  const d = run(
    obs({ role: PRIMARY, child: running(), consul: { primary: slot(), replica: reg } }),
    INITIAL_MEMORY,
    p,
  );
  assertEquals(types(d), ["register:primary", "deregister:replica"]);
});

Deno.test("is converged only when the world matches the role", () => {
  const reg = slot({ state: "registered", lastPassAt: 10_000, lastSyncAt: 10_000 });
  assert(run(obs({ child: running(), consul: { primary: reg, replica: slot() } })).converged);
  assert(!run(obs({ child: idle })).converged);
  assert(run(obs({ role: REPLICA })).converged);
});

Deno.test("repeating a cycle repeats nothing under way (idempotent)", () => {
  const inflight = slot({ state: "unknown", inflight: true });
  const o = obs({
    child: { ...running(), phase: "stopping" },
    role: REPLICA,
    consul: { primary: inflight, replica: slot() },
  });
  assertEquals(run(o).actions, []);
});
