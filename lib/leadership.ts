/**
 * Leadership: merges the LiteFS event stream, periodic `/info`, the `.primary`
 * poll and an inotify wake-up into one role with a reason and a cause.
 * @module
 */

import type { Config } from "./config.ts";
import { EVENTS_STABLE_MS, EventStream, fetchInfo, type LeaderEvent } from "./litefs_api.ts";
import { PrimaryFilePoller } from "./primary_file.ts";
import { type ApiView, deriveRole, type FileView, type Role } from "./role.ts";
import { errorText } from "./error_text.ts";

/**
 * After a failed `/info`, ask again this soon instead of at the next
 * interval: one failure must not outlast the unknown-role grace, and the end
 * of a wedge should be noticed within a fraction of a second.
 */
export const INFO_RETRY_MS = 500;
/**
 * Consecutive `/info` failures, with the event stream open, before the API
 * counts as not answering: a single 500 or timeout is retried, not acted on.
 */
export const INFO_FAILURES_TO_WEDGE = 2;

/** Which input produced the newest role. */
export type RoleCause = "start" | "event" | "info" | "poll" | "api-lost";

/** The merged leadership view. */
export interface LeadershipView {
  role: Role;
  /** When the role's kind last changed. */
  since: number;
  /** What made the role change last. */
  cause: RoleCause;
}

/** Hooks for log lines that are not role changes. */
export interface LeadershipLog {
  apiState(connected: boolean, detail: string): void;
  badEventLine(reason: string): void;
  /** The mount could not be read (`detail`), or can be again (null). */
  mountState(detail: string | null): void;
}

/** The merged leadership source of one node. */
export class Leadership {
  readonly #cfg: Config;
  readonly #onChange: () => void;
  readonly #log: LeadershipLog;
  readonly #now: () => number;
  readonly #poller: PrimaryFilePoller;
  readonly #stream: EventStream | null;
  #api: ApiView | null;
  #streamUp = false;
  #demotions = 0;
  #view: LeadershipView;
  #infoTimer: ReturnType<typeof setInterval> | null = null;
  #watcher: Deno.FsWatcher | null = null;
  #abort = new AbortController();
  #mountError: string | null = null;
  /** The trouble last logged per source, so a repeated failure is logged once. */
  #apiProblem: Record<"events" | "info", string | null> = { events: null, info: null };
  /** `/info` requests sent, and the newest one whose answer was applied. */
  #infoSent = 0;
  #infoApplied = 0;
  /** Consecutive failed `/info` requests. */
  #infoFailures = 0;
  #infoRetry: ReturnType<typeof setTimeout> | null = null;
  /** Set while a reconnected stream has to prove itself before its recovery is logged. */
  #streamStable: ReturnType<typeof setTimeout> | null = null;

  /** @param onChange called whenever the role (kind, primary or reason) changes */
  constructor(cfg: Config, onChange: () => void, log: LeadershipLog, now: () => number) {
    this.#cfg = cfg;
    this.#onChange = onChange;
    this.#log = log;
    this.#now = now;
    this.#api = cfg.litefsApi
      ? {
        reachable: false,
        wedged: false,
        isPrimary: null,
        primaryHostname: null,
        detail: "not contacted yet",
      }
      : null;
    this.#poller = new PrimaryFilePoller(
      cfg.mountDir,
      cfg.pollIntervalMs,
      (v) => {
        this.#noteMount(v);
        this.#update("poll");
      },
      now,
    );
    this.#stream = cfg.litefsApi
      ? new EventStream(cfg.litefsApi, {
        onConnected: () => {
          this.#streamUp = true;
          if (this.#apiProblem.events === null) {
            this.#log.apiState(true, "event stream connected");
          } else {
            // A stream that ends right after connecting would otherwise log a
            // pair of lines per reconnect: its recovery counts once it lasts.
            this.#streamStable = setTimeout(() => {
              this.#streamStable = null;
              this.#apiProblem.events = null;
              this.#log.apiState(true, "event stream connected again");
            }, EVENTS_STABLE_MS);
          }
          this.#refreshInfo();
        },
        onEvent: (e) => this.#event(e),
        onDisconnected: (reason) => {
          if (this.#streamStable !== null) clearTimeout(this.#streamStable);
          this.#streamStable = null;
          this.#apiTrouble("events", reason);
          this.#streamUp = false;
          this.#api!.detail = reason;
          this.#refreshInfo();
        },
        onBadLine: (reason) => this.#log.badEventLine(reason),
      })
      : null;
    this.#view = {
      role: deriveRole(this.#api, { state: "unread" }, cfg.leadership),
      since: now(),
      cause: "start",
    };
  }

  /** The current view. */
  get view(): LeadershipView {
    return this.#view;
  }

  /** Starts every source. */
  start(): void {
    this.#poller.start();
    this.#stream?.start();
    if (this.#cfg.litefsApi) {
      this.#infoTimer = setInterval(() => this.#refreshInfo(), this.#cfg.infoIntervalMs);
    }
    if (this.#cfg.watch) this.#watch();
  }

  /** Stops every source. */
  async stop(): Promise<void> {
    this.#abort.abort();
    this.#poller.stop();
    if (this.#infoTimer !== null) clearInterval(this.#infoTimer);
    if (this.#infoRetry !== null) clearTimeout(this.#infoRetry);
    if (this.#streamStable !== null) clearTimeout(this.#streamStable);
    try {
      this.#watcher?.close();
    } catch {
      // already closed
    }
    await this.#stream?.stop();
  }

  #event(e: LeaderEvent): void {
    const api = this.#api!;
    if (e.isPrimary) {
      // Promote on agreement: an event may be stale or out of order, so a claim
      // of primacy is confirmed by /info (one local request) before it counts.
      this.#refreshInfo("event");
      return;
    }
    // Demote on any signal: acting on a stale "not primary" is always safe.
    api.reachable = true;
    this.#demotions++;
    api.isPrimary = false;
    api.primaryHostname = e.hostname;
    this.#update("event");
    // `.primary` may lag the event by one poll; read it now rather than wait.
    this.#poller.poll().then(() => this.#update("event"));
  }

  async #refreshInfo(cause: RoleCause = "info"): Promise<void> {
    const api = this.#api;
    if (!api || !this.#cfg.litefsApi) return;
    const demotions = this.#demotions;
    const seq = ++this.#infoSent;
    try {
      const info = await fetchInfo(this.#cfg.litefsApi, this.#abort.signal);
      // An answer to an older request than one already applied is stale.
      if (seq < this.#infoApplied) return;
      this.#infoApplied = seq;
      if (this.#apiProblem.info !== null) {
        this.#apiProblem.info = null;
        this.#log.apiState(true, "/info answers again");
      }
      this.#infoFailures = 0;
      api.reachable = true;
      api.wedged = false;
      // A "not primary" event newer than this request beats its "primary" answer.
      if (!info.isPrimary || demotions === this.#demotions) {
        api.isPrimary = info.isPrimary;
        api.primaryHostname = info.primaryHostname;
      }
      // A fresh answer may promote: read the file (and the mount dir) fresh too.
      await this.#poller.poll({ checkDir: true });
      this.#update(cause, true);
    } catch (e) {
      if (this.#abort.signal.aborted || seq < this.#infoApplied) return;
      this.#infoApplied = seq;
      this.#infoFailures++;
      this.#scheduleInfoRetry();
      // With the stream open one failure is retried first. After that the
      // open stream counts for nothing: it has no heartbeat, so beside a
      // failing /info it proves nothing about the role.
      if (this.#streamUp && this.#infoFailures < INFO_FAILURES_TO_WEDGE) return;
      api.detail = `/info: ${errorText(e)}`;
      api.reachable = false;
      api.wedged = this.#streamUp;
      this.#apiTrouble("info", api.detail);
      this.#update("api-lost", true);
    }
  }

  #scheduleInfoRetry(): void {
    if (this.#infoRetry !== null || this.#abort.signal.aborted) return;
    this.#infoRetry = setTimeout(() => {
      this.#infoRetry = null;
      this.#refreshInfo();
    }, INFO_RETRY_MS);
  }

  /** Logs API trouble once per source and reason (a reconnected stream starts afresh). */
  #apiTrouble(source: "events" | "info", reason: string): void {
    if (reason === this.#apiProblem[source]) return;
    this.#apiProblem[source] = reason;
    this.#log.apiState(false, reason);
  }

  async #watch(): Promise<void> {
    try {
      this.#watcher = Deno.watchFs(this.#cfg.mountDir, { recursive: false });
      for await (const _ of this.#watcher) this.#poller.poll();
    } catch {
      // Watching is only a hint (and silent on FUSE anyway); polling carries on.
    }
  }

  /** Logs a broken mount once when it breaks and once when it recovers. */
  #noteMount(v: FileView): void {
    const detail = v.state === "error" ? v.detail : null;
    if (detail === this.#mountError || (detail === null && v.state === "unread")) return;
    this.#mountError = detail;
    this.#log.mountState(detail);
  }

  /**
   * Re-derives the role. `fresh` says the API view was just read (or just
   * failed); a step into primary on anything older is first confirmed with
   * `/info`, so a stale "primary" answer never starts Navidrome on a replica
   * whose `.primary` vanished.
   */
  #update(cause: RoleCause, fresh = false): void {
    const file: FileView = this.#poller.view;
    const role = deriveRole(this.#api, file, this.#cfg.leadership);
    const old = this.#view.role;
    if (!fresh && role.kind === "primary" && old.kind !== "primary" && this.#api !== null) {
      this.#refreshInfo(cause);
      return;
    }
    if (role.kind === old.kind && role.primary === old.primary && role.reason === old.reason) {
      return;
    }
    this.#view = {
      role,
      since: role.kind === old.kind ? this.#view.since : this.#now(),
      cause,
    };
    this.#onChange();
  }
}
