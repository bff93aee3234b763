/**
 * Polls `<mount>/.primary`. LiteFS sends no inotify event when the file
 * appears or vanishes, but never caches its attributes either, so a `stat` on
 * every tick sees the truth.
 * @module
 */

import type { FileView } from "./role.ts";

/** A stat still unanswered after this long means the FUSE mount hangs. */
export const STAT_HUNG_MS = 2000;

/**
 * While `.primary` stays absent, the mount dir itself is checked only every
 * this many polls (about once a second at the default interval). Each check
 * is a second stat per poll, most of an idle primary's CPU time; a mount dir
 * that vanishes is a misconfiguration, not a failover, and a broken FUSE mount
 * fails the file's own stat at once ("transport endpoint is not connected").
 */
export const DIR_CHECK_EVERY = 5;

/**
 * Reads `.primary` once: present (with the primary's hostname), absent, or an
 * error. `checkDir` (the default) also proves the mount dir exists when the
 * file does not, so a missing dir is an error rather than "absent".
 */
export async function readPrimaryFile(mountDir: string, checkDir = true): Promise<FileView> {
  const path = `${mountDir}/.primary`;
  try {
    await Deno.stat(path);
    const hostname = (await Deno.readTextFile(path)).trim();
    return { state: "present", hostname };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      if (!checkDir) return { state: "absent" };
      try {
        const st = await Deno.stat(mountDir);
        if (st.isDirectory) return { state: "absent" };
        return { state: "error", detail: `${mountDir} is not a directory` };
      } catch (e2) {
        return { state: "error", detail: describe(e2) };
      }
    }
    return { state: "error", detail: describe(e) };
  }
}

/** Polls the file on an interval and on demand; reports every change. */
export class PrimaryFilePoller {
  readonly #mountDir: string;
  readonly #intervalMs: number;
  readonly #onChange: (v: FileView) => void;
  readonly #now: () => number;
  #timer: ReturnType<typeof setInterval> | null = null;
  #inflightSince: number | null = null;
  #again = false;
  #last: FileView = { state: "unread" };
  #waiters: (() => void)[] = [];
  #reads = 0;
  #forceDirCheck = false;

  /** @param onChange called whenever the view differs from the previous one */
  constructor(
    mountDir: string,
    intervalMs: number,
    onChange: (v: FileView) => void,
    now: () => number,
  ) {
    this.#mountDir = mountDir;
    this.#intervalMs = intervalMs;
    this.#onChange = onChange;
    this.#now = now;
  }

  /** The newest result. */
  get view(): FileView {
    return this.#last;
  }

  /** Starts polling (first read at once). */
  start(): void {
    this.#timer = setInterval(() => this.poll(), this.#intervalMs);
    this.poll();
  }

  /** Stops polling. */
  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /**
   * Reads now (or right after the read under way). Resolves once a read that
   * began after this call has finished, so a caller sees a fresh view;
   * `checkDir` makes that read prove the mount dir exists, whatever the cadence.
   */
  poll(opts: { checkDir?: boolean } = {}): Promise<void> {
    if (opts.checkDir) this.#forceDirCheck = true;
    const done = new Promise<void>((r) => this.#waiters.push(r));
    if (this.#inflightSince !== null) {
      this.#again = true;
      if (this.#now() - this.#inflightSince > STAT_HUNG_MS) {
        this.#set({
          state: "error",
          detail: `stat of .primary unanswered for over ${STAT_HUNG_MS}ms`,
        });
      }
      return done;
    }
    this.#run();
    return done;
  }

  async #run(): Promise<void> {
    do {
      this.#again = false;
      this.#inflightSince = this.#now();
      const waiters = this.#waiters;
      this.#waiters = [];
      // The dir is checked on every read that could change the view to
      // "absent", on request, and otherwise every DIR_CHECK_EVERY-th read.
      const checkDir = this.#last.state !== "absent" || this.#forceDirCheck ||
        this.#reads++ % DIR_CHECK_EVERY === 0;
      this.#forceDirCheck = false;
      const v = await readPrimaryFile(this.#mountDir, checkDir);
      this.#inflightSince = null;
      this.#set(v);
      for (const w of waiters) w();
    } while (this.#again);
  }

  #set(v: FileView): void {
    if (JSON.stringify(v) === JSON.stringify(this.#last)) return;
    this.#last = v;
    this.#onChange(v);
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message.split("\n")[0]}` : String(e);
}
