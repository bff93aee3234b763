/**
 * A LiteFS node simulator for tests: the `.primary` file in a plain directory
 * standing in for the FUSE mount, and the two HTTP endpoints the supervisor
 * reads, `GET /info` and `GET /events`, as LiteFS v0.5.14 serves them
 * (`http/server.go`, `store.go`, `litefs.go`, `fuse/primary_node.go`).
 *
 * The HTTP server is hand-written over `Deno.listen` rather than `Deno.serve`
 * so a fault test gets exactly what a dying LiteFS produces on the wire: a
 * chunked `/events` body cut off mid-chunk with no terminating chunk (the
 * reader sees a body error, not a clean end), and no stack traces in the test
 * output. It speaks just enough HTTP/1.1 for `fetch`: keep-alive, Content-Length
 * request bodies, chunked streaming responses.
 *
 * Run by hand (or from a demo):
 *
 * ```sh
 * deno run -A tests/support/litefs_sim.ts --mount DIR --hostname H [--port N] [--primary]
 * ```
 *
 * It prints its URL, then reads commands on stdin, one a line: `primary`,
 * `replica <host>`, `none`. SIGINT or SIGTERM stops it.
 *
 * @module
 */

/**
 * An `/events` subscriber whose backlog reaches this many events is cut off
 * after the backlog is delivered, as LiteFS's `EventChannelBufferSize` does.
 */
export const EVENT_BUFFER_SIZE = 1024;

/** Where LiteFS keeps its data by default; `/info`'s `path` is the data dir, not the mount. */
const DEFAULT_DATA_DIR = "/var/lib/litefs";

/** Refuses request heads beyond this, so a garbage client cannot grow a buffer unbounded. */
const MAX_HEAD_BYTES = 64 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Options for {@linkcode LiteFsSim.start}. */
export interface LiteFsSimOptions {
  /** Directory standing in for the FUSE mount; created if missing. `.primary` lives here. */
  mountDir: string;
  /** This node's `lease.hostname`. */
  hostname: string;
  /** TCP port on 127.0.0.1; default: one the kernel picks. */
  port?: number;
  /** Start as primary (default false). */
  isPrimary?: boolean;
  /** For a replica: the primary's hostname, or null (default) when no primary is known yet. */
  primaryHostname?: string | null;
  /** `lease.candidate`, reported by `/info` (default true). */
  candidate?: boolean;
  /** `data.dir`, reported as `/info`'s `path` (default `/var/lib/litefs`). */
  dataDir?: string;
}

/** One request the simulator received. */
export interface SimRequest {
  /** `Date.now()` when the request head was read. */
  at: number;
  /** URL path without the query string. */
  path: string;
}

/** How {@linkcode LiteFsSim.dropStreams} ends the open `/events` responses. */
export interface DropOptions {
  /** First send the first half of a `primaryChange` line, without its newline. */
  midLine?: boolean;
  /**
   * End each body properly with the terminating chunk (what LiteFS does to a
   * reader that fell too far behind) instead of cutting the connection (what
   * a crashing LiteFS does). Default false.
   */
  clean?: boolean;
}

/** A simulated LiteFS node. See the module documentation. */
export class LiteFsSim {
  readonly #mountDir: string;
  readonly #hostname: string;
  readonly #candidate: boolean;
  readonly #dataDir: string;
  readonly #clusterId = "LFSC" + randomHex(8);
  readonly #nodeId = randomHex(8);
  #port: number;
  #isPrimary: boolean;
  #primaryHostname: string | null;
  #silent = false;
  /** While set, `/info` requests wait on it: a wedged LiteFS HTTP handler. */
  #infoHeld: PromiseWithResolvers<void> | null = null;
  /** How many of the next `/info` requests answer 500. */
  #infoFailures = 0;
  #endAfterInit = false;
  #txid = 0;
  #listener: Deno.Listener | undefined;
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #streams = new Set<EventStream>();

  /** Every request received, oldest first (tests may clear it). */
  readonly requests: SimRequest[] = [];

  private constructor(opts: LiteFsSimOptions) {
    this.#mountDir = opts.mountDir;
    this.#hostname = opts.hostname;
    this.#candidate = opts.candidate ?? true;
    this.#dataDir = opts.dataDir ?? DEFAULT_DATA_DIR;
    this.#port = opts.port ?? 0;
    this.#isPrimary = opts.isPrimary ?? false;
    this.#primaryHostname = this.#isPrimary ? null : opts.primaryHostname ?? null;
  }

  /** Creates the mount directory's `.primary` state and starts serving. */
  static async start(opts: LiteFsSimOptions): Promise<LiteFsSim> {
    await Deno.mkdir(opts.mountDir, { recursive: true });
    const sim = new LiteFsSim(opts);
    sim.#writePrimaryFile();
    sim.#listen();
    return sim;
  }

  /** Base URL of the API, `http://127.0.0.1:<port>`; stable across {@linkcode setApiDown}. */
  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Number of `/events` readers currently subscribed (for leak checks). */
  get streamCount(): number {
    return this.#streams.size;
  }

  /**
   * This node acquires the lease: `.primary` disappears and a
   * `primaryChange` with `isPrimary: true` and no hostname is sent.
   */
  setPrimary(): void {
    this.#isPrimary = true;
    this.#primaryHostname = null;
    this.#roleChanged();
  }

  /**
   * This node is a replica connected to `primaryHostname` (`.primary` holds it
   * plus a newline), or, with null, a replica that knows no primary
   * (disconnected, reconnecting, electing: `.primary` is absent).
   */
  setReplica(primaryHostname: string | null): void {
    this.#isPrimary = false;
    this.#primaryHostname = primaryHostname;
    this.#roleChanged();
  }

  /**
   * Sends `text` verbatim to every open `/events` stream as one chunk; include
   * the trailing `\n` for a whole line, leave it out to split a line across
   * chunks. Ignores {@linkcode silentEvents}.
   */
  emitRaw(text: string): void {
    this.#broadcast(encoder.encode(text));
  }

  /** Sends a `tx` event for `navidrome.db`, shaped like LiteFS's `TxEventData`. */
  emitTx(): void {
    this.#txid++;
    this.#emitEvent({
      type: "tx",
      db: "navidrome.db",
      data: {
        txID: hex16(this.#txid),
        postApplyChecksum: randomHex(8).toLowerCase(),
        pageSize: 4096,
        commit: 8 + this.#txid,
        timestamp: goTime(new Date()),
      },
    });
  }

  /**
   * Ends every open `/events` response: by default the connection is cut (the
   * reader sees an incomplete body); see {@linkcode DropOptions}.
   */
  dropStreams(opts: DropOptions = {}): void {
    const line = JSON.stringify({ type: "primaryChange", data: this.#roleData() });
    const partial = opts.midLine ? encoder.encode(line.slice(0, line.length >> 1)) : undefined;
    for (const stream of this.#streams) stream.finish(opts.clean ? "clean" : "abort", partial);
    this.#streams.clear();
  }

  /**
   * Down: the listener and every connection are closed, so connections are
   * refused and open streams break. Up: listens again on the same port.
   */
  setApiDown(down: boolean): void {
    if (down === (this.#listener === undefined)) return;
    if (down) this.#closeAll();
    else this.#listen();
  }

  /**
   * While on, role changes update `/info` and `.primary` but send no event:
   * a missed event that only `/info`, a poll or a reconnect's `init` reveals.
   */
  silentEvents(on: boolean): void {
    this.#silent = on;
  }

  /**
   * While on, `/info` requests are read but not answered (open `/events`
   * streams stay open and silent): LiteFS's HTTP side wedged. Turning it off
   * answers the held requests with the current state.
   */
  freezeInfo(on: boolean): void {
    if (on) this.#infoHeld ??= Promise.withResolvers<void>();
    else {
      this.#infoHeld?.resolve();
      this.#infoHeld = null;
    }
  }

  /** The next `n` `/info` requests answer 500 (a passing fault). */
  failInfo(n: number): void {
    this.#infoFailures = n;
  }

  /**
   * While on, every new `/events` stream ends cleanly right after its `init`
   * line: a broken LiteFS that invites a reconnect storm.
   */
  endStreamsAfterInit(on: boolean): void {
    this.#endAfterInit = on;
  }

  /**
   * Closes the API, waits for every connection task to end, and removes
   * `.primary`, as unmounting does.
   */
  async stop(): Promise<void> {
    this.freezeInfo(false);
    this.#closeAll();
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
    await Deno.remove(this.#primaryPath).catch(() => {});
  }

  get #primaryPath(): string {
    return `${this.#mountDir}/.primary`;
  }

  #roleData(): { isPrimary: boolean; hostname?: string } {
    // Go's omitempty: no hostname key when this node is primary or knows no primary.
    return this.#primaryHostname === null
      ? { isPrimary: this.#isPrimary }
      : { isPrimary: this.#isPrimary, hostname: this.#primaryHostname };
  }

  #roleChanged(): void {
    this.#writePrimaryFile();
    if (!this.#silent) this.#emitEvent({ type: "primaryChange", data: this.#roleData() });
  }

  #writePrimaryFile(): void {
    if (this.#primaryHostname === null) {
      try {
        Deno.removeSync(this.#primaryPath);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      return;
    }
    // Renamed into place so a poller never reads an empty or half-written file.
    const tmp = `${this.#mountDir}/.primary.sim-tmp`;
    Deno.writeTextFileSync(tmp, this.#primaryHostname + "\n");
    Deno.renameSync(tmp, this.#primaryPath);
  }

  #emitEvent(event: object): void {
    this.#broadcast(encoder.encode(JSON.stringify(event) + "\n"));
  }

  #broadcast(bytes: Uint8Array): void {
    for (const stream of this.#streams) {
      if (stream.backlog >= EVENT_BUFFER_SIZE) {
        this.#streams.delete(stream);
        stream.finish("clean");
      } else {
        stream.send(bytes);
      }
    }
  }

  #listen(): void {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: this.#port });
    this.#listener = listener;
    this.#port = (listener.addr as Deno.NetAddr).port;
    this.#track(this.#acceptLoop(listener));
  }

  #closeAll(): void {
    try {
      this.#listener?.close();
    } catch {
      // Already closed.
    }
    this.#listener = undefined;
    for (const conn of this.#conns) closeQuietly(conn);
    this.#conns.clear();
    this.#streams.clear();
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #acceptLoop(listener: Deno.Listener): Promise<void> {
    try {
      for await (const conn of listener) {
        // Go sets TCP_NODELAY on every connection; without it Nagle holds back an
        // event written right after the headers until the client's delayed ACK.
        (conn as Deno.TcpConn).setNoDelay(true);
        this.#conns.add(conn);
        this.#track(this.#serveConn(conn));
      }
    } catch {
      // The listener was closed under the loop: that is how it ends.
    }
  }

  async #serveConn(conn: Deno.Conn): Promise<void> {
    const reader = new ConnReader(conn);
    try {
      for (;;) {
        const head = await reader.readHead();
        if (head === null) return;
        const request = parseHead(head);
        if (request === undefined) {
          await writeAll(
            conn,
            encoder.encode("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"),
          );
          return;
        }
        // Bodies are ignored but must be consumed to find the next request.
        if (request.chunkedBody) request.keepAlive = false;
        else await reader.skip(request.contentLength);
        this.requests.push({ at: Date.now(), path: request.path });
        const reusable = await this.#respond(conn, reader, request);
        if (!reusable || !request.keepAlive) return;
      }
    } catch {
      // Reset, closed by setApiDown/stop, or a malformed request: drop the connection.
    } finally {
      this.#conns.delete(conn);
      closeQuietly(conn);
    }
  }

  /** Writes the response; resolves to whether the connection may carry another request. */
  async #respond(conn: Deno.Conn, reader: ConnReader, req: ParsedRequest): Promise<boolean> {
    if (req.path === "/info" || req.path === "/events") {
      if (req.method !== "GET") {
        await writeAll(conn, this.#plain(req, 405, "method not allowed\n"));
      } else if (req.path === "/info") {
        if (this.#infoHeld) await this.#infoHeld.promise;
        if (this.#infoFailures > 0) {
          this.#infoFailures--;
          await writeAll(conn, this.#plain(req, 500, "internal error\n"));
        } else {
          await writeAll(conn, this.#plain(req, 200, JSON.stringify(this.#info(), null, 2) + "\n"));
        }
      } else {
        return await this.#streamEvents(conn, reader);
      }
    } else {
      await writeAll(conn, this.#plain(req, 404, "404 page not found\n"));
    }
    return true;
  }

  #info(): object {
    return {
      clusterID: this.#clusterId,
      isPrimary: this.#isPrimary,
      candidate: this.#candidate,
      path: this.#dataDir,
      // LiteFS reports its own hostname when primary and "" (not omitted) when no primary is known.
      primary: { hostname: this.#isPrimary ? this.#hostname : this.#primaryHostname ?? "" },
    };
  }

  /** Headers Go's net/http plus LiteFS's middleware put on every API response. */
  #headers(status: number, extra: Record<string, string>): string {
    const lines = [`HTTP/1.1 ${status} ${STATUS_TEXT[status]}`];
    for (const [k, v] of Object.entries(extra)) lines.push(`${k}: ${v}`);
    lines.push(`Litefs-Cluster-Id: ${this.#clusterId}`, `Litefs-Id: ${this.#nodeId}`);
    lines.push(`Date: ${new Date().toUTCString()}`);
    return lines.join("\r\n") + "\r\n";
  }

  /**
   * A fixed-length text response. `/info` is text/plain too: LiteFS sets no
   * Content-Type there and Go sniffs JSON as text.
   */
  #plain(req: ParsedRequest, status: number, body: string): Uint8Array {
    const bytes = encoder.encode(body);
    const extra: Record<string, string> = { "Content-Type": "text/plain; charset=utf-8" };
    if (status !== 200) extra["X-Content-Type-Options"] = "nosniff";
    extra["Content-Length"] = String(bytes.length);
    const head = encoder.encode(this.#headers(status, extra) + "\r\n");
    return req.method === "HEAD" ? head : concat(head, bytes);
  }

  async #streamEvents(conn: Deno.Conn, reader: ConnReader): Promise<boolean> {
    const head = this.#headers(200, {
      "Content-Type": "application/json",
      "Transfer-Encoding": "chunked",
    }) + "\r\n";
    const stream = new EventStream(conn, encoder.encode(head));
    stream.send(encoder.encode(JSON.stringify({ type: "init", data: this.#roleData() }) + "\n"));
    if (this.#endAfterInit) {
      stream.finish("clean");
      await stream.done;
      return false;
    }
    this.#streams.add(stream);
    // No heartbeats flow, so only a read notices a reader that hung up.
    this.#track(
      (async () => {
        while (!stream.finished) {
          if (!await reader.fill()) break;
        }
      })().catch(() => {}).finally(() => stream.finish("abort")),
    );
    const clean = await stream.done;
    this.#streams.delete(stream);
    if (!clean) {
      // Closing first unblocks a write stuck on a reader that stopped reading.
      closeQuietly(conn);
      await stream.idle;
    }
    return clean;
  }
}

/** One `/events` response: a write queue drained in order onto the connection. */
class EventStream {
  readonly #conn: Deno.Conn;
  readonly #queue: Uint8Array[];
  readonly #done = Promise.withResolvers<boolean>();
  #ending: "clean" | "abort" | undefined;
  #pumping: Promise<void> | undefined;

  constructor(conn: Deno.Conn, head: Uint8Array) {
    this.#conn = conn;
    this.#queue = [head];
  }

  /** Resolves when the response is over: true when it ended cleanly. */
  get done(): Promise<boolean> {
    return this.#done.promise;
  }

  /** Whether {@linkcode finish} was called or the connection failed. */
  get finished(): boolean {
    return this.#ending !== undefined;
  }

  /** Resolves once no write is in progress. */
  get idle(): Promise<void> {
    return this.#pumping ?? Promise.resolve();
  }

  /** Events queued but not yet written to the socket. */
  get backlog(): number {
    return this.#queue.length;
  }

  send(bytes: Uint8Array): void {
    if (this.#ending) return;
    this.#queue.push(chunk(bytes));
    this.#pump();
  }

  /**
   * "clean": deliver the backlog, `partial`, then the terminating chunk.
   * "abort": drop the backlog, deliver `partial` if given, then close.
   */
  finish(how: "clean" | "abort", partial?: Uint8Array): void {
    if (this.#ending) return;
    this.#ending = how;
    if (how === "abort") this.#queue.length = 0;
    if (partial) this.#queue.push(chunk(partial));
    if (how === "clean") this.#queue.push(encoder.encode("0\r\n\r\n"));
    // Nothing left to write: close now, even if a write is stuck on a reader that stopped reading.
    if (this.#queue.length === 0) this.#done.resolve(false);
    this.#pump();
  }

  #pump(): void {
    this.#pumping ??= this.#drain().finally(() => this.#pumping = undefined);
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) await writeAll(this.#conn, this.#queue.shift()!);
      if (this.#ending) this.#done.resolve(this.#ending === "clean");
    } catch {
      this.#ending ??= "abort";
      this.#queue.length = 0;
      this.#done.resolve(false);
    }
  }
}

interface ParsedRequest {
  method: string;
  path: string;
  contentLength: number;
  chunkedBody: boolean;
  keepAlive: boolean;
}

const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  404: "Not Found",
  405: "Method Not Allowed",
  500: "Internal Server Error",
};

function parseHead(head: string): ParsedRequest | undefined {
  const [requestLine, ...headerLines] = head.split("\r\n");
  const [method, target, version] = requestLine.split(" ");
  if (!method || !target?.startsWith("/") || !version?.startsWith("HTTP/1.")) return undefined;
  const headers = new Map<string, string>();
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    if (colon > 0) {
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
  }
  const contentLength = Number(headers.get("content-length") ?? 0);
  if (!Number.isSafeInteger(contentLength) || contentLength < 0) return undefined;
  const connection = headers.get("connection")?.toLowerCase() ?? "";
  return {
    method,
    path: target.split("?")[0],
    contentLength,
    chunkedBody: /chunked/i.test(headers.get("transfer-encoding") ?? ""),
    keepAlive: version === "HTTP/1.1" ? connection !== "close" : connection === "keep-alive",
  };
}

/**
 * Buffered reads from one connection, with at most one read in flight: the
 * hang-up watcher of a stream and the request loop after it share it, so
 * bytes the watcher reads are not lost to the loop.
 */
class ConnReader {
  readonly #conn: Deno.Conn;
  #buf: Uint8Array = new Uint8Array(0);
  #inflight: Promise<boolean> | undefined;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** Reads more bytes into the buffer; resolves false at end of stream. */
  fill(): Promise<boolean> {
    this.#inflight ??= this.#readOnce().finally(() => this.#inflight = undefined);
    return this.#inflight;
  }

  async #readOnce(): Promise<boolean> {
    const block = new Uint8Array(16 * 1024);
    const n = await this.#conn.read(block);
    if (n === null) return false;
    this.#buf = concat(this.#buf, block.subarray(0, n));
    return true;
  }

  /** The next request head without its blank line, or null at a clean end of stream. */
  async readHead(): Promise<string | null> {
    for (;;) {
      const end = indexOfCrlfCrlf(this.#buf);
      if (end >= 0) {
        const head = decoder.decode(this.#buf.subarray(0, end));
        this.#buf = this.#buf.slice(end + 4);
        return head;
      }
      if (this.#buf.length > MAX_HEAD_BYTES) throw new Error("request head too large");
      if (!await this.fill()) {
        if (this.#buf.length === 0) return null;
        throw new Error("connection closed mid-request");
      }
    }
  }

  /** Discards the next `n` bytes. */
  async skip(n: number): Promise<void> {
    while (this.#buf.length < n) {
      n -= this.#buf.length;
      this.#buf = new Uint8Array(0);
      if (!await this.fill()) throw new Error("connection closed mid-body");
    }
    this.#buf = this.#buf.slice(n);
  }
}

function indexOfCrlfCrlf(buf: Uint8Array): number {
  for (let i = 0; i + 3 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

/** Frames `bytes` as one HTTP/1.1 chunk; Go flushes one chunk per event. */
function chunk(bytes: Uint8Array): Uint8Array {
  return concat(encoder.encode(bytes.length.toString(16) + "\r\n"), bytes, encoder.encode("\r\n"));
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

function randomHex(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))]
    .map((b) => b.toString(16).padStart(2, "0").toUpperCase())
    .join("");
}

/** `%016x`, as ltx formats a TXID. */
function hex16(n: number): string {
  return n.toString(16).padStart(16, "0");
}

/** Go's RFC3339Nano for a UTC time: trailing zeros of the fraction are dropped. */
function goTime(date: Date): string {
  return date.toISOString().replace(/\.?0+Z$/, "Z");
}

/** Parses CLI flags; exits with usage on anything unexpected. */
function parseCli(args: string[]): LiteFsSimOptions {
  const usage = "usage: litefs_sim.ts --mount DIR --hostname H [--port N] [--primary]";
  const opts: Partial<LiteFsSimOptions> = {};
  let valid = true;
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    if (flag === "--primary") opts.isPrimary = true;
    else if (flag === "--mount") opts.mountDir = args[++i];
    else if (flag === "--hostname") opts.hostname = args[++i];
    else if (flag === "--port") opts.port = Number(args[++i]);
    else valid = false;
  }
  const portOk = opts.port === undefined || (Number.isInteger(opts.port) && opts.port >= 0);
  if (!valid || !opts.mountDir || !opts.hostname || !portOk) {
    console.error(usage);
    Deno.exit(2);
  }
  return opts as LiteFsSimOptions;
}

async function cli(): Promise<void> {
  const sim = await LiteFsSim.start(parseCli(Deno.args));
  console.log(sim.url);
  const shutdown = async () => {
    await sim.stop();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);
  let pending = "";
  for await (const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    pending += text;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const [command, arg] = pending.slice(0, nl).trim().split(/\s+/);
      pending = pending.slice(nl + 1);
      if (command === "primary") sim.setPrimary();
      else if (command === "replica" && arg) sim.setReplica(arg);
      else if (command === "none") sim.setReplica(null);
      else if (command) console.error("unknown command (primary | replica <host> | none)");
    }
  }
  // stdin closed (e.g. /dev/null under a demo script): keep serving until a signal.
}

if (import.meta.main) await cli();
