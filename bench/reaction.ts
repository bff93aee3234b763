/**
 * Reaction latency: from a leadership change (the harness's `Date.now()` right
 * before it changes `.primary` and emits the event) to each first action of
 * the supervisor — the deregister request arriving at the Consul double,
 * SIGTERM arriving at the app, the app spawned, the register request arriving.
 * @module
 */

import { randomDelay } from "./delay.ts";
import { type AppEvent, BenchNode, type Subject } from "./node.ts";

/** The four first actions a change causes. */
export type ActionName = "deregister" | "sigterm" | "spawn" | "register";

/** The actions in report order: a demotion's two, then a promotion's two. */
export const ACTIONS: readonly ActionName[] = ["deregister", "sigterm", "spawn", "register"];

/** All reaction samples of one subject, in milliseconds. */
export interface ReactionResult {
  subject: Subject;
  /** Leadership changes made (half demotions, half promotions). */
  changes: number;
  samples: Record<ActionName, number[]>;
  /** Changes whose actions did not all arrive within the deadline. */
  lost: number;
  /**
   * Promotions only: change to the app being up (its `start` record: signal
   * handlers set, `/ping` bound), and from there to the register request.
   * Ours registers only an app that answers its health URL, so its register
   * figure includes the app's own start; negative for a supervisor that
   * registers before the app is up.
   */
  appUp: number[];
  /** See {@link ReactionResult.appUp}. */
  registerAfterAppUp: number[];
  /** Wall time of the whole series, in milliseconds. */
  wallMs: number;
}

/** Options of {@link measureReaction}. */
export interface ReactionOptions {
  subject: Subject;
  changes: number;
  /**
   * Upper bound of the random pause before each change. A change made right
   * after the previous one settled would always land at the same phase of a
   * polling loop (for the shell loop: just after its `sleep 1` began, so
   * always ~1 s); a uniform random pause of one period spreads the changes
   * evenly over the period, which is what real leadership changes do.
   */
  phaseSpreadMs: number;
  /** Deadline of each wait. */
  timeoutMs?: number;
  progress?: (done: number) => void;
}

const isRegister = (path: string) => path.startsWith("/v1/agent/service/register");
const isDeregister = (path: string) => path.startsWith("/v1/agent/service/deregister/");

/**
 * Runs one subject through `changes` leadership changes, starting as primary,
 * alternating demotion and promotion. Each change waits until its effects are
 * complete (the app stopped and reaped, or started and ready for signals), so
 * every action is attributed to the change that caused it.
 */
export async function measureReaction(opts: ReactionOptions): Promise<ReactionResult> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const node = await BenchNode.create({ subject: opts.subject, primary: true });
  const samples: Record<ActionName, number[]> = {
    deregister: [],
    sigterm: [],
    spawn: [],
    register: [],
  };
  const appUp: number[] = [];
  const registerAfterAppUp: number[] = [];
  let lost = 0;
  const started = Date.now();
  try {
    node.launch();
    await settledPrimary(node, 0, 0, timeoutMs);
    for (let i = 0; i < opts.changes; i++) {
      await randomDelay(opts.phaseSpreadMs);
      const ev = node.appEvents().length;
      const call = node.calls.length;
      const toPrimary = !node.primary;
      const t0 = node.setRole(toPrimary);
      try {
        if (toPrimary) {
          const { spawn, register, up } = await settledPrimary(node, ev, call, timeoutMs);
          samples.spawn.push(spawn.at - t0);
          samples.register.push(register - t0);
          appUp.push(up.at - t0);
          registerAfterAppUp.push(register - up.at);
        } else {
          const { deregister, term } = await settledReplica(node, ev, call, timeoutMs);
          samples.deregister.push(deregister - t0);
          samples.sigterm.push(term.at - t0);
        }
      } catch (e) {
        // Counted and reported, never fatal: a slow CI machine must not fail the run.
        lost++;
        console.error(`  lost change ${i + 1}: ${(e as Error).message.split("\n")[0]}`);
        await resync(node, toPrimary, timeoutMs * 2);
      }
      opts.progress?.(i + 1);
    }
  } finally {
    await node.cleanup();
  }
  return {
    subject: opts.subject,
    changes: opts.changes,
    samples,
    lost,
    appUp,
    registerAfterAppUp,
    wallMs: Date.now() - started,
  };
}

/**
 * Waits for a promotion's effects after the given state-file and call
 * indexes: the app spawned, registered, and up (its signal handlers are in
 * place only once it logged `start`, so the next demotion's SIGTERM counts).
 */
async function settledPrimary(
  node: BenchNode,
  evFrom: number,
  callFrom: number,
  timeoutMs: number,
): Promise<{ spawn: AppEvent; register: number; up: AppEvent }> {
  const spawn = await node.until(
    () => node.appEvents().slice(evFrom).find((e) => e.event === "spawn"),
    "app spawned",
    timeoutMs,
  );
  const register = await node.until(
    () => node.calls.slice(callFrom).find((c) => c.method === "PUT" && isRegister(c.path)),
    "register request",
    timeoutMs,
  );
  const up = await node.until(
    () => node.appEvents().slice(evFrom).find((e) => e.event === "start" && e.pid === spawn.pid),
    "app up",
    timeoutMs,
  );
  return { spawn, register: register.at, up };
}

/**
 * Waits for a demotion's effects: the deregister request, SIGTERM at the app,
 * and the app gone and reaped (a promotion must not wait on the old child).
 */
async function settledReplica(
  node: BenchNode,
  evFrom: number,
  callFrom: number,
  timeoutMs: number,
): Promise<{ deregister: number; term: AppEvent }> {
  const deregister = await node.until(
    () => node.calls.slice(callFrom).find((c) => c.method === "PUT" && isDeregister(c.path)),
    "deregister request",
    timeoutMs,
  );
  const term = await node.until(
    () => node.appEvents().slice(evFrom).find((e) => e.event === "term"),
    "SIGTERM at the app",
    timeoutMs,
  );
  await node.until(() => node.appGone(term.pid), "app exited and reaped", timeoutMs);
  return { deregister: deregister.at, term };
}

/** After a lost change: waits until the node is back in the role's steady state. */
async function resync(node: BenchNode, primary: boolean, timeoutMs: number): Promise<void> {
  const alive = () =>
    node.appEvents().filter((e) => e.event === "start").map((e) => e.pid).filter((p) =>
      !node.appGone(p)
    );
  await node.until(
    () => (primary ? alive().length === 1 : alive().length === 0),
    `steady ${primary ? "primary" : "replica"} after a lost change`,
    timeoutMs,
  );
}
