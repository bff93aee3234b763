/**
 * LiteFS's HTTP API, the authoritative source of "am I primary": the `/events`
 * NDJSON stream for prompt changes and `/info` to repair anything the stream
 * missed or merged.
 * @module
 */

import { abortableDelay } from "./delay.ts";
import { errorText } from "./error_text.ts";

/** A leadership event from `/events` (`init` or `primaryChange`). */
export interface LeaderEvent {
  type: "init" | "primaryChange";
  isPrimary: boolean;
  /** The primary's hostname when LiteFS gives one (omitted when empty). */
  hostname: string | null;
}

/** How long one `/info` call may take: the API is local, so a slow answer is trouble. */
export const INFO_TIMEOUT_MS = 1000;
/** First reconnect delay of the event stream: a restarting LiteFS is back quickly. */
export const EVENTS_RECONNECT_MIN_MS = 100;
/**
 * A connection that lasted this long was a working stream: the reconnect
 * backoff starts over. One that ended sooner (a LiteFS that closes the
 * stream right after `init`) keeps the backoff growing, so a broken stream
 * costs a reconnect every couple of seconds, not ten a second.
 */
export const EVENTS_STABLE_MS = 5000;
/** Reconnect delay cap: the API is local and `/info` polling covers the gap anyway. */
export const EVENTS_RECONNECT_MAX_MS = 2000;
/**
 * Longest event line accepted. LiteFS's events are a few hundred bytes; a
 * stream that sends more without a newline is broken, and buffering it would
 * grow without bound, so the connection is dropped and opened again.
 */
export const MAX_EVENT_LINE_CHARS = 64 * 1024;

/**
 * Parses one `/events` line. Returns the leadership event, `null` for lines
 * that are valid but not about leadership (`tx`, unknown types), or throws
 * with a short description of what is wrong.
 */
export function parseEventLine(line: string): LeaderEvent | null {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    throw new Error(`not JSON: ${line.slice(0, 80)}`);
  }
  if (typeof msg !== "object" || msg === null) throw new Error("not an object");
  const { type, data } = msg as { type?: unknown; data?: unknown };
  if (type !== "init" && type !== "primaryChange") return null;
  if (typeof data !== "object" || data === null) throw new Error(`${type} without data`);
  const { isPrimary, hostname } = data as { isPrimary?: unknown; hostname?: unknown };
  if (typeof isPrimary !== "boolean") throw new Error(`${type} without isPrimary`);
  return {
    type,
    isPrimary,
    hostname: typeof hostname === "string" && hostname !== "" ? hostname : null,
  };
}

/** What `/info` tells about leadership. */
export interface InfoAnswer {
  isPrimary: boolean;
  primaryHostname: string | null;
}

/** `GET /info`; throws with a one-line reason on any failure. */
export async function fetchInfo(apiUrl: string, signal?: AbortSignal): Promise<InfoAnswer> {
  const timeout = AbortSignal.timeout(INFO_TIMEOUT_MS);
  const res = await fetch(`${apiUrl}/info`, {
    signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`/info answered ${res.status}`);
  const body = JSON.parse(text) as { isPrimary?: unknown; primary?: unknown };
  if (typeof body.isPrimary !== "boolean") throw new Error("/info has no isPrimary");
  const p = body.primary as { hostname?: unknown } | string | undefined | null;
  const host = typeof p === "string" ? p : typeof p?.hostname === "string" ? p.hostname : null;
  return { isPrimary: body.isPrimary, primaryHostname: host || null };
}

/** Callbacks of an {@link EventStream}. */
export interface EventStreamHandlers {
  onConnected(): void;
  onEvent(e: LeaderEvent): void;
  /** The stream ended or could not be opened; it will reconnect by itself. */
  onDisconnected(reason: string): void;
  /** A line that could not be understood (logged, then ignored). */
  onBadLine(reason: string): void;
}

/** Reads `/events` for as long as it runs, reconnecting with capped backoff. */
export class EventStream {
  readonly #url: string;
  readonly #h: EventStreamHandlers;
  readonly #abort = new AbortController();
  #done: Promise<void> = Promise.resolve();

  /** @param apiUrl LiteFS API base URL */
  constructor(apiUrl: string, handlers: EventStreamHandlers) {
    this.#url = `${apiUrl}/events`;
    this.#h = handlers;
  }

  /** Starts reading in the background. */
  start(): void {
    this.#done = this.#loop();
  }

  /** Stops reading and waits for the reader to finish. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#done;
  }

  async #loop(): Promise<void> {
    let delay = EVENTS_RECONNECT_MIN_MS;
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      let connectedAt: number | null = null;
      try {
        const res = await fetch(this.#url, { signal });
        if (!res.ok || !res.body) {
          await res.body?.cancel();
          throw new Error(`/events answered ${res.status}`);
        }
        this.#h.onConnected();
        connectedAt = performance.now();
        let buf = "";
        for await (const chunk of res.body.pipeThrough(new TextDecoderStream())) {
          buf += chunk;
          let nl: number;
          while ((nl = buf.indexOf("\n")) !== -1) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (line !== "") this.#line(line);
          }
          if (buf.length > MAX_EVENT_LINE_CHARS) {
            throw new Error(`event line longer than ${MAX_EVENT_LINE_CHARS} characters`);
          }
        }
        // A partial last line means the stream was cut mid-event: drop it.
        this.#h.onDisconnected("event stream ended");
      } catch (e) {
        if (signal.aborted) return;
        this.#h.onDisconnected(errorText(e));
      }
      if (connectedAt !== null && performance.now() - connectedAt >= EVENTS_STABLE_MS) {
        delay = EVENTS_RECONNECT_MIN_MS;
      }
      await abortableDelay(delay, signal);
      delay = Math.min(EVENTS_RECONNECT_MAX_MS, delay * 2);
    }
  }

  #line(line: string): void {
    try {
      const e = parseEventLine(line);
      if (e) this.#h.onEvent(e);
    } catch (err) {
      this.#h.onBadLine(err instanceof Error ? err.message : String(err));
    }
  }
}
