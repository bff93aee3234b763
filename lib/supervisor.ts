/**
 * The driver: observes the world, asks the decision core what to do, carries
 * the actions out through the effect modules, and sleeps until something
 * changes. Effects run in the background so a slow Consul or a child taking
 * its time to stop never blocks the next look at the world.
 * @module
 */

import type { Config } from "./config.ts";
import { type AgentService, ConsulAgent, type ConsulResult } from "./consul_agent.ts";
import {
  type Action,
  decide,
  EXIT,
  type ExitRecord,
  INITIAL_MEMORY,
  type Memory,
  newSlot,
  type Observation,
  type Policy,
  type SlotName,
  type SlotObservation,
} from "./decide.ts";
import { abortableDelay } from "./delay.ts";
import { formatDuration } from "./duration.ts";
import { Leadership } from "./leadership.ts";
import { logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { ProcessGroup } from "./process_group.ts";
import { waitReady } from "./readiness.ts";
import { agentMatches, serviceDefinition, slotIds } from "./registration.ts";
import type { RoleKind } from "./role.ts";
import { redact } from "./secret.ts";
import { VERSION } from "./version.ts";
import { errorText } from "./error_text.ts";

/**
 * Longest a stop waits for the deregister before it: the local agent answers
 * in milliseconds, so this only matters when Consul is sick, and then it must
 * not keep Navidrome running on a node that lost the lease.
 */
export const DEREGISTER_BUDGET_MS = 1000;
/** First retry of a failed Consul request; the agent is local, so retry soon. */
export const CONSUL_RETRY_MIN_MS = 500;
/** Retry cap, also the pace for errors the agent will repeat (ACL denied). */
export const CONSUL_RETRY_MAX_MS = 30_000;
/**
 * Safety net of the level-triggered loop: even with no event at all the world
 * is re-read this often, so a missed wake-up costs at most this much.
 */
export const MAX_IDLE_TICK_MS = 1000;
/** Set over Navidrome's inherited environment: the token and its file blanked (they cannot be unset). */
const CHILD_ENV = { CONSUL_HTTP_TOKEN: "", CONSUL_HTTP_TOKEN_FILE: "" };

/** The Consul agent surface the driver needs (a real agent or a test fake). */
export type AgentLike = Pick<
  ConsulAgent,
  "register" | "deregister" | "passCheck" | "service" | "close"
>;

/** Optional replacements for the outside world. */
export interface SupervisorDeps {
  now?: () => number;
  agent?: AgentLike | null;
}

interface Slot extends SlotObservation {
  lastError: string | null;
}

/** A snapshot for `/status`. */
export interface StatusSnapshot {
  version: string;
  hostname: string;
  role: RoleKind;
  roleSince: string;
  reason: string;
  cause: string;
  primary: string | null;
  child: { pid: number | null; running: boolean; ready: boolean; uptimeMs: number | null };
  restarts: number;
  consecutiveFailures: number;
  consul: null | Record<SlotName, { state: string; lastError: string | null }>;
  uptimeMs: number;
}

/** One supervisor: Navidrome on the LiteFS primary, Consul pointing at it. */
export class Supervisor {
  readonly #cfg: Config;
  readonly #now: () => number;
  readonly #agent: AgentLike | null;
  readonly #group: ProcessGroup;
  readonly #leadership: Leadership;
  readonly #policy: Policy;
  readonly #slots: Record<SlotName, Slot>;
  readonly #log = logger();
  readonly #clog = logger("consul");
  readonly #startedAt: number;
  /** Counters and histograms for `/metrics`. */
  readonly metrics = new Metrics();
  #memory: Memory = { ...INITIAL_MEMORY };
  #shutdown: Observation["shutdown"] = null;
  #wake: (() => void) | null = null;
  #pendingWake = false;
  #lastRoleKind: RoleKind | null = null;
  #lastReason: string | null = null;
  #reactionFrom: number | null = null;
  #transitionAt: number | null = null;
  #ready = false;
  #readyAbort: AbortController | null = null;
  #loggedExitSeq = 0;
  #stopSignals = 0;

  /** @param command Navidrome's command line, run without a shell */
  constructor(cfg: Config, command: readonly string[], deps: SupervisorDeps = {}) {
    this.#cfg = cfg;
    this.#now = deps.now ?? Date.now;
    this.#startedAt = this.#now();
    this.#agent = deps.agent !== undefined
      ? deps.agent
      : cfg.consul.enabled
      ? new ConsulAgent(cfg.consul)
      : null;
    // Navidrome inherits our environment but not the Consul token: it never
    // needs it, and its plugins or a crash dump should not see it.
    this.#group = new ProcessGroup(command, () => this.#notify(), this.#now, CHILD_ENV);
    this.#leadership = new Leadership(cfg, () => this.#notify(), {
      apiState: (up, detail) =>
        up
          ? this.#log.info("LiteFS API: {detail}", { detail })
          : this.#log.warn("LiteFS API lost: {detail}", { detail }),
      badEventLine: (reason) => this.#log.warn("ignored LiteFS event: {reason}", { reason }),
      mountState: (detail) =>
        detail === null
          ? this.#log.info("mount {dir} readable again", { dir: cfg.mountDir })
          : this.#log.warn("mount {dir} unreadable: {detail}", {
            dir: cfg.mountDir,
            detail,
          }),
    }, this.#now);
    const fresh = (state: Slot["state"]): Slot => ({ ...newSlot(state), lastError: null });
    this.#slots = {
      // Unknown: the agent may still hold a registration from a killed run.
      primary: fresh("unknown"),
      replica: fresh(cfg.consul.replicaServiceName ? "unknown" : "absent"),
    };
    this.#policy = {
      unknownGraceMs: cfg.unknownGraceMs,
      restartDelayMs: cfg.restartDelayMs,
      restartDelayMaxMs: cfg.restartDelayMaxMs,
      stableAfterMs: cfg.stableAfterMs,
      maxFailures: cfg.maxFailures,
      ttlMs: cfg.consul.ttlMs,
      syncIntervalMs: cfg.consul.syncIntervalMs,
      consulRetryMinMs: CONSUL_RETRY_MIN_MS,
      consulRetryMaxMs: CONSUL_RETRY_MAX_MS,
      deregisterBudgetMs: DEREGISTER_BUDGET_MS,
      replicaSlot: cfg.consul.replicaServiceName !== null,
    };
  }

  /**
   * Asks the supervisor to stop: the first call stops gracefully (deregister,
   * stop Navidrome, exit 0); any later call kills the group and exits at once.
   */
  requestShutdown(signal: string): void {
    // Counted apart from fail(): an internal error's stop is no first signal.
    const kind = ++this.#stopSignals === 1 ? "graceful" : "immediate";
    this.#log.info("{signal}: {what}", {
      signal,
      what: kind === "graceful" ? "stopping gracefully" : "second signal, killing Navidrome now",
    });
    this.#shutdown = {
      kind,
      at: this.#shutdown?.at ?? this.#now(),
      failure: this.#shutdown?.failure ?? false,
    };
    this.#notify();
  }

  /**
   * An internal error (a bug): stop as for a first signal — deregister, stop
   * Navidrome — then exit 1, so LiteFS releases the lease instead of leaving
   * an unsupervised Navidrome behind.
   */
  fail(error: unknown): void {
    this.#log.fatal("internal error, stopping: {error}", { error: errorText(error) });
    // A stop under way carries on as it is, but ends in exit 1 all the same.
    this.#shutdown = this.#shutdown
      ? { ...this.#shutdown, failure: true }
      : { kind: "graceful", at: this.#now(), failure: true };
    this.#notify();
  }

  /** Passes SIGUSR1 (start a library scan) to Navidrome. */
  forwardScanSignal(): void {
    const sent = this.#group.signalLeader("SIGUSR1");
    this.#log.info("SIGUSR1 {what}", {
      what: sent ? "passed to Navidrome (library scan)" : "ignored: Navidrome is not running",
    });
  }

  /** Runs until an exit action; resolves with the exit code. */
  async run(): Promise<number> {
    this.#log.info("supervisor {version} on {host}: mount {mount}, LiteFS API {api}", {
      version: VERSION,
      host: this.#cfg.hostname,
      mount: this.#cfg.mountDir,
      api: this.#cfg.litefsApi ?? "off",
    });
    this.#leadership.start();
    try {
      while (true) {
        const now = this.#now();
        const obs = this.#observe(now);
        this.#noteRole(obs);
        this.#noteStopped(obs.child.lastExit);
        const d = decide(obs, this.#memory, this.#policy);
        this.#memory = d.memory;
        for (const a of d.actions) {
          if (a.type === "exit") {
            this.#log.info("exit {code}: {reason}", { code: a.code, reason: a.reason });
            return a.code;
          }
          this.#execute(a, now);
        }
        if (d.converged && this.#transitionAt !== null) {
          this.#log.info("{role} settled in {ms}", {
            role: obs.role.kind,
            ms: formatDuration(this.#now() - this.#transitionAt),
          });
          this.#transitionAt = null;
        }
        const sleep = d.wakeAt === null ? MAX_IDLE_TICK_MS : d.wakeAt - this.#now();
        await this.#sleep(Math.max(0, Math.min(MAX_IDLE_TICK_MS, sleep)));
      }
    } catch (e) {
      // The loop itself broke: Navidrome must not outlive its supervisor.
      this.#group.kill();
      throw e;
    } finally {
      this.#readyAbort?.abort();
      await this.#leadership.stop();
      this.#agent?.close();
    }
  }

  /** What `/status` shows. */
  status(): StatusSnapshot {
    const v = this.#leadership.view;
    const c = this.#group.observe();
    const now = this.#now();
    return {
      version: VERSION,
      hostname: this.#cfg.hostname,
      role: v.role.kind,
      roleSince: new Date(v.since).toISOString(),
      reason: v.role.reason,
      cause: v.cause,
      primary: v.role.primary,
      child: {
        pid: c.pid,
        running: c.phase === "running",
        ready: this.#ready && c.phase === "running",
        uptimeMs: c.startedAt === null ? null : Math.round(now - c.startedAt),
      },
      restarts: this.metrics.childRestarts,
      consecutiveFailures: this.#memory.failures,
      consul: this.#agent
        ? {
          primary: { state: this.#slots.primary.state, lastError: this.#slots.primary.lastError },
          replica: { state: this.#slots.replica.state, lastError: this.#slots.replica.lastError },
        }
        : null,
      uptimeMs: Math.round(now - this.#startedAt),
    };
  }

  #observe(now: number): Observation {
    const v = this.#leadership.view;
    return {
      now,
      role: v.role,
      roleSince: v.since,
      child: this.#group.observe(),
      ready: this.#ready,
      consul: this.#agent
        ? { primary: { ...this.#slots.primary }, replica: { ...this.#slots.replica } }
        : null,
      shutdown: this.#shutdown,
    };
  }

  #noteRole(obs: Observation): void {
    const kind = obs.role.kind;
    if (obs.role.reason !== this.#lastReason) {
      this.#lastReason = obs.role.reason;
      // Logged from the loop, so the line proves a decision was taken on it.
      this.#log.debug("role {kind}: {reason}", { kind, reason: obs.role.reason });
    }
    if (kind === this.#lastRoleKind) return;
    const from = this.#lastRoleKind ?? "start";
    this.#lastRoleKind = kind;
    this.metrics.transitions[kind]++;
    this.#reactionFrom = obs.roleSince;
    this.#transitionAt = obs.roleSince;
    this.#log.info("role {from} -> {to} (cause: {cause}; {reason})", {
      from,
      to: kind,
      cause: this.#leadership.view.cause,
      reason: obs.role.reason,
    });
  }

  /** Logs how a stop the supervisor asked for ended (unexpected exits log as restarts). */
  #noteStopped(exit: ExitRecord | null): void {
    if (!exit || exit.seq <= this.#loggedExitSeq) return;
    this.#loggedExitSeq = exit.seq;
    if (!exit.requested || exit.stopAskedAt === undefined) return;
    const fields = { how: describeExit(exit), ms: formatDuration(exit.at - exit.stopAskedAt) };
    if (exit.escalated) {
      this.#log.warn(
        "Navidrome ignored SIGTERM for NDLS_STOP_TIMEOUT ({ms}); its group was killed ({how})",
        fields,
      );
    } else {
      this.#log.info("Navidrome stopped in {ms} ({how})", fields);
    }
  }

  #execute(a: Action, now: number): void {
    if (
      this.#reactionFrom !== null && ["start", "stop", "register", "deregister"].includes(a.type)
    ) {
      this.metrics.observeReaction(now - this.#reactionFrom);
      this.#reactionFrom = null;
    }
    switch (a.type) {
      case "start":
        return this.#start();
      case "stop":
        this.#log.info("stopping Navidrome (pid {pid}): {reason}", {
          pid: this.#group.observe().pid,
          reason: a.reason,
        });
        this.#readyAbort?.abort();
        return this.#group.stop(this.#cfg.stopTimeoutMs);
      case "kill":
        this.#readyAbort?.abort();
        return this.#group.kill();
      case "restartScheduled":
        this.metrics.childRestarts++;
        this.#log.warn(
          "Navidrome exited unexpectedly ({how}); failure {n} of {max}, restarting in {delay}",
          {
            how: describeExit(a.exit),
            n: a.failures,
            max: this.#cfg.maxFailures,
            delay: formatDuration(a.delayMs),
          },
        );
        return;
      case "gaveUp":
        this.metrics.childRestarts++;
        this.#log.error(
          "Navidrome failed {times} in a row (last: {how}); giving up so LiteFS releases the lease",
          { times: a.failures === 1 ? "once" : `${a.failures} times`, how: describeExit(a.exit) },
        );
        return;
      case "register":
      case "deregister":
      case "pass":
      case "sync":
        return void this.#consul(a.type, a.slot).catch((e) => this.fail(e));
    }
  }

  #start(): void {
    this.#group.start();
    const c = this.#group.observe();
    if (c.phase !== "running") return;
    this.#log.info("started Navidrome, pid {pid}", { pid: c.pid });
    this.#ready = false;
    this.#readyAbort = new AbortController();
    const started = this.#now();
    const signal = this.#readyAbort.signal;
    abortableDelay(this.#cfg.readyWarningMs, signal).then(() => {
      if (signal.aborted || this.#ready) return;
      this.#log.warn("Navidrome has not answered {url} for {ms}; not registered until it does", {
        url: this.#cfg.healthUrl,
        ms: formatDuration(this.#cfg.readyWarningMs),
      });
    });
    waitReady(this.#cfg.healthUrl, this.#cfg.healthIntervalMs, this.#readyAbort.signal).then(
      (ok) => {
        if (!ok) return;
        this.#ready = true;
        this.#log.info("Navidrome ready after {ms} ({url})", {
          ms: formatDuration(this.#now() - started),
          url: this.#cfg.healthUrl,
        });
        // Registration waits for readiness: let the loop register now.
        this.#notify();
      },
    ).catch((e) => this.fail(e));
  }

  async #consul(op: "register" | "deregister" | "pass" | "sync", name: SlotName): Promise<void> {
    const agent = this.#agent!;
    const slot = this.#slots[name];
    const ids = slotIds(this.#cfg, name);
    const def = serviceDefinition(this.#cfg, name, VERSION);
    slot.inflight = true;
    let res: ConsulResult<unknown>;
    try {
      if (op === "register") res = await agent.register(def);
      else if (op === "deregister") res = await agent.deregister(ids.serviceId);
      else if (op === "pass") {
        res = await agent.passCheck(ids.ttlCheckId, `LiteFS says ${name} (${this.#cfg.hostname})`);
      } else res = await agent.service(ids.serviceId);
    } catch (e) {
      // The client sorts every expected failure itself; anything else is still
      // only a failed request, never a reason to bring the supervisor down.
      res = {
        ok: false,
        kind: "server",
        status: null,
        message: redact(errorText(e), [this.#cfg.consul.token]),
      };
    } finally {
      slot.inflight = false;
    }
    const now = this.#now();
    if (!res.ok) {
      slot.failedAt = now;
      slot.failures++;
      slot.slowRetry = res.kind === "denied" || res.kind === "rejected";
      this.metrics.consulErrors[res.kind]++;
      const msg = `${op} ${ids.serviceId}: ${res.message}`;
      if (msg !== slot.lastError) this.#clog.warn("Consul {msg}", { msg });
      slot.lastError = msg;
    } else {
      if (slot.lastError !== null) {
        this.#clog.info("Consul {op} {id} succeeded again", { op, id: ids.serviceId });
        // The agent may have restarted while unreachable: read our entry back soon.
        slot.lastSyncAt = null;
      }
      slot.failedAt = null;
      slot.failures = 0;
      slot.slowRetry = false;
      slot.lastError = null;
      this.#applySuccess(op, name, slot, res.value, now);
    }
    this.#notify();
  }

  #applySuccess(
    op: "register" | "deregister" | "pass" | "sync",
    name: SlotName,
    slot: Slot,
    value: unknown,
    now: number,
  ): void {
    const id = slotIds(this.#cfg, name).serviceId;
    switch (op) {
      case "register":
        this.#clog.info("registered {id} as {role}", { id, role: name });
        slot.state = "registered";
        slot.lastPassAt = null;
        slot.lastSyncAt = now;
        return;
      case "deregister":
        if (slot.state !== "absent") this.#clog.info("deregistered {id}", { id });
        slot.state = "absent";
        return;
      case "pass":
        if (value === false) {
          this.#clog.warn("agent lost the TTL check of {id}; registering again", { id });
          slot.state = "absent";
        } else {
          slot.lastPassAt = now;
        }
        return;
      case "sync": {
        const held = value as AgentService | null;
        if (held === null) {
          this.#clog.warn("agent lost {id}; registering again", { id });
          slot.state = "absent";
        } else if (!agentMatches(held, serviceDefinition(this.#cfg, name, VERSION))) {
          this.#clog.warn("agent holds an altered {id}; registering again", { id });
          slot.state = "absent";
        }
        slot.lastSyncAt = now;
        return;
      }
    }
  }

  #notify(): void {
    this.#pendingWake = true;
    this.#wake?.();
  }

  #sleep(ms: number): Promise<void> {
    if (this.#pendingWake) {
      this.#pendingWake = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.#wake = null;
        this.#pendingWake = false;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.#wake = done;
    });
  }
}

/** "code 3" or "signal SIGKILL" or the spawn error, for log lines. */
export function describeExit(
  e: { code: number | null; signal: string | null; spawnError?: string },
): string {
  if (e.spawnError) return `could not start: ${e.spawnError}`;
  if (e.signal) return `signal ${e.signal}`;
  return `code ${e.code}`;
}

export { EXIT };
