/**
 * Test helpers for waiting on conditions and inspecting processes.
 *
 * Tests wait on observable conditions with deadlines instead of sleeping a
 * guessed amount of time: a guess is either too short on a loaded CI machine
 * or needlessly slow everywhere else.
 *
 * @module
 */

/** A probe result that means "not yet". */
export type NotYet = undefined | null | false;

/** Options for {@linkcode waitFor}. */
export interface WaitForOptions {
  /** Give up after this many milliseconds. */
  timeoutMs: number;
  /** Pause between probes, in milliseconds (default 10). */
  intervalMs?: number;
  /** What is being waited for, used in the timeout message. */
  what: string;
}

/**
 * Polls `probe` until it returns a truthy value and resolves to that value.
 *
 * A probe that throws counts as "not yet"; its last error is attached to the
 * timeout error (as `cause` and in the message) so a failing test says why the
 * condition never held. A probe that hangs is abandoned at the deadline.
 *
 * @throws {Error} `timed out after <timeoutMs>ms waiting for <what>`.
 */
export async function waitFor<T>(
  probe: () => T | NotYet | Promise<T | NotYet>,
  { timeoutMs, intervalMs = 10, what }: WaitForOptions,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = undefined;
  let threw = false;
  for (;;) {
    const remaining = deadline - Date.now();
    const outcome = await withDeadline(async () => await probe(), Math.max(remaining, 0));
    if (outcome.kind === "value" && outcome.value) return outcome.value as T;
    if (outcome.kind === "error") {
      lastError = outcome.error;
      threw = true;
    }
    if (outcome.kind === "late" || Date.now() >= deadline) break;
    await sleep(Math.min(intervalMs, Math.max(deadline - Date.now(), 0)));
  }
  const suffix = threw ? ` (last probe error: ${describe(lastError)})` : "";
  throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${suffix}`, {
    cause: threw ? lastError : undefined,
  });
}

type Outcome<T> =
  | { kind: "value"; value: T }
  | { kind: "error"; error: unknown }
  | { kind: "late" };

/** Runs `fn` but stops waiting for it after `ms`, so one hung probe cannot outlive the deadline. */
async function withDeadline<T>(fn: () => Promise<T>, ms: number): Promise<Outcome<T>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(() => resolve({ kind: "late" }), ms);
  });
  try {
    return await Promise.race([
      fn().then(
        (value): Outcome<T> => ({ kind: "value", value }),
        (error): Outcome<T> => ({ kind: "error", error }),
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Returns a TCP port on 127.0.0.1 that was free a moment ago.
 *
 * The kernel picks it (port 0), so parallel tests do not collide on a
 * hard-coded number; another process could still take it before the caller
 * binds it, which is an accepted race for tests.
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    return (listener.addr as Deno.NetAddr).port;
  } finally {
    listener.close();
  }
}

/** The fields of `/proc/<pid>/stat` these helpers need. */
export interface ProcStat {
  /** Process id. */
  pid: number;
  /** Executable name as the kernel keeps it (at most 15 bytes). */
  comm: string;
  /** One-letter state: R, S, D, Z, T, … */
  state: string;
  /** Parent process id. */
  ppid: number;
  /** Process group id. */
  pgrp: number;
}

/**
 * Reads `/proc/<pid>/stat`, or returns `undefined` when the process does not
 * exist (or vanished while being read).
 */
export function readProcStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  return parseProcStat(text);
}

/**
 * Parses one `/proc/<pid>/stat` line.
 *
 * `comm` is wrapped in parentheses but may itself contain spaces and
 * parentheses (an executable can be named `x) Z 1 1 (y`), so the fields after
 * it are found from the *last* `)`, which the kernel always writes itself.
 */
function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) return undefined;
  const [state, ppid, pgrp] = text.slice(close + 2).split(" ");
  const stat = {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state,
    ppid: Number(ppid),
    pgrp: Number(pgrp),
  };
  return Number.isInteger(stat.pid) && Number.isInteger(stat.pgrp) ? stat : undefined;
}

/**
 * Tells whether `pid` is a running process.
 *
 * A zombie counts as dead: it has exited and only waits to be reaped, which
 * may never happen when the test machine's PID 1 does not reap orphans.
 */
export function processAlive(pid: number): boolean {
  const stat = readProcStat(pid);
  return stat !== undefined && stat.state !== "Z";
}

/**
 * Lists the live (non-zombie) processes whose process group is `pgid`,
 * in ascending pid order.
 */
export function processGroupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const stat = readProcStat(Number(entry.name));
    if (stat && stat.pgrp === pgid && stat.state !== "Z") members.push(stat.pid);
  }
  return members.sort((a, b) => a - b);
}

/**
 * Lists the live (non-zombie) processes other than this one whose environment
 * contains `text`, in ascending pid order. A child inherits its parent's
 * environment, so a value only one test run uses (a temporary directory)
 * finds every process that run spawned, however deep, even one too young to
 * have announced itself yet.
 */
export function processesWithEnvironment(text: string): number[] {
  const found: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name) || Number(entry.name) === Deno.pid) continue;
    let environ: string;
    try {
      environ = Deno.readTextFileSync(`/proc/${entry.name}/environ`);
    } catch {
      continue; // Gone, or not ours to read.
    }
    if (environ.includes(text) && processAlive(Number(entry.name))) found.push(Number(entry.name));
  }
  return found.sort((a, b) => a - b);
}
