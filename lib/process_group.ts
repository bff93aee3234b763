/**
 * Runs the supervised command in its own process group, so a stop reaches
 * Navidrome's scanner and ffmpeg children too, and reports how it ended.
 * @module
 */

import type { ChildObservation, ExitRecord } from "./decide.ts";

/** Signals the whole group is sent. */
type GroupSignal = "SIGTERM" | "SIGKILL";

/**
 * One supervised command. At most one process group exists at a time: `start`
 * refuses while a child is running or stopping.
 */
export class ProcessGroup {
  readonly #argv: readonly string[];
  readonly #onChange: () => void;
  readonly #now: () => number;
  readonly #env: Readonly<Record<string, string>>;
  #child: Deno.ChildProcess | null = null;
  #phase: ChildObservation["phase"] = "idle";
  #startedAt: number | null = null;
  #stopRequested = false;
  #stopAskedAt: number | null = null;
  #escalated = false;
  #killTimer: ReturnType<typeof setTimeout> | null = null;
  #lastExit: ExitRecord | null = null;
  #seq = 0;
  #exited: Promise<void> = Promise.resolve();

  /**
   * @param argv the command and its arguments, run directly (no shell)
   * @param onChange called after every start, stop request and exit
   * @param env variables set (over the inherited environment) for the child
   */
  constructor(
    argv: readonly string[],
    onChange: () => void,
    now: () => number = Date.now,
    env: Readonly<Record<string, string>> = {},
  ) {
    this.#argv = argv;
    this.#onChange = onChange;
    this.#now = now;
    this.#env = env;
  }

  /** The child as it is now. */
  observe(): ChildObservation {
    return {
      phase: this.#phase,
      pid: this.#child?.pid ?? null,
      startedAt: this.#startedAt,
      lastExit: this.#lastExit,
    };
  }

  /** Resolves when the current child (if any) has exited and been accounted for. */
  get exited(): Promise<void> {
    return this.#exited;
  }

  /**
   * Spawns the command as the leader of a new process group (setsid), with
   * the supervisor's environment and stdio. A spawn failure is recorded as an
   * exit so the core's restart policy handles it like a crash.
   */
  start(): void {
    if (this.#phase !== "idle") return;
    const [cmd, ...args] = this.#argv;
    const startedAt = this.#now();
    this.#stopRequested = false;
    this.#stopAskedAt = null;
    this.#escalated = false;
    try {
      this.#child = new Deno.Command(cmd, {
        args,
        env: { ...this.#env },
        detached: true,
        stdin: "null",
        stdout: "inherit",
        stderr: "inherit",
      }).spawn();
    } catch (e) {
      this.#lastExit = {
        seq: ++this.#seq,
        at: this.#now(),
        startedAt,
        code: null,
        signal: null,
        requested: false,
        spawnError: e instanceof Error ? e.message : String(e),
      };
      this.#onChange();
      return;
    }
    this.#phase = "running";
    this.#startedAt = startedAt;
    const child = this.#child;
    this.#exited = child.status.then((st) => this.#reap(child, st));
    this.#onChange();
  }

  /**
   * SIGTERM to the whole group, then SIGKILL to the group after `timeoutMs`
   * if the leader has not exited. Idempotent while stopping.
   */
  stop(timeoutMs: number): void {
    if (this.#phase !== "running" || !this.#child) return;
    this.#phase = "stopping";
    this.#stopRequested = true;
    this.#stopAskedAt = this.#now();
    this.#signalGroup("SIGTERM");
    this.#killTimer = setTimeout(() => {
      this.#escalated = true;
      this.#signalGroup("SIGKILL");
    }, timeoutMs);
    this.#onChange();
  }

  /** SIGKILL to the whole group now (second signal, or give-up). */
  kill(): void {
    if (this.#phase === "idle" || !this.#child) return;
    this.#stopRequested = true;
    this.#stopAskedAt ??= this.#now();
    this.#phase = "stopping";
    this.#signalGroup("SIGKILL");
  }

  /**
   * Passes a signal to the leader alone (SIGUSR1 starts a Navidrome scan).
   * Never to the group: SIGUSR1's default action is to terminate, so it would
   * kill a running ffmpeg transcode or the scanner.
   */
  signalLeader(sig: "SIGUSR1"): boolean {
    const pid = this.#child?.pid;
    if (this.#phase !== "running" || pid === undefined) return false;
    try {
      Deno.kill(pid, sig);
      return true;
    } catch {
      // ESRCH: it exited a moment ago; its reaping is under way.
      return false;
    }
  }

  #signalGroup(sig: GroupSignal): boolean {
    const pid = this.#child?.pid;
    if (pid === undefined) return false;
    try {
      Deno.kill(-pid, sig);
      return true;
    } catch {
      // ESRCH: the group is already empty.
      return false;
    }
  }

  #reap(child: Deno.ChildProcess, st: Deno.CommandStatus): void {
    if (this.#killTimer !== null) clearTimeout(this.#killTimer);
    this.#killTimer = null;
    // The leader is gone; anything left in its group (a scanner that ignored
    // SIGTERM, an orphaned ffmpeg) must not outlive it.
    this.#signalGroup("SIGKILL");
    this.#lastExit = {
      seq: ++this.#seq,
      at: this.#now(),
      startedAt: this.#startedAt ?? this.#now(),
      code: st.signal ? null : st.code,
      signal: st.signal ?? null,
      requested: this.#stopRequested,
      ...(this.#stopAskedAt === null ? {} : { stopAskedAt: this.#stopAskedAt }),
      ...(this.#escalated ? { escalated: true } : {}),
    };
    this.#stopAskedAt = null;
    this.#escalated = false;
    if (this.#child === child) this.#child = null;
    this.#phase = "idle";
    this.#startedAt = null;
    this.#onChange();
  }
}
