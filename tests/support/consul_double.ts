/**
 * A Consul agent double for tests: the agent endpoints the supervisor uses, the
 * session and KV endpoints LiteFS's Consul lease uses, and the health endpoint
 * consumers such as Traefik read. Real Consul cannot be installed on our
 * machines, so every test and the end-to-end cluster talk to this instead; it
 * copies the real agent's status codes, plain-text error bodies, JSON shapes
 * and header names (read from hashicorp/consul `agent/*_endpoint.go`,
 * `agent/http.go`, `agent/local/state.go`, `agent/checks/check.go`,
 * `agent/consul/state/kvs.go` and `session.go`).
 *
 * It serves HTTP/1.1 itself on a plain TCP listener, because `Deno.serve` can
 * neither leave a request unanswered forever nor drop a connection mid-request,
 * and both are what a stopped or wedged agent does.
 *
 * Where Consul leaves a choice, or the double simplifies:
 * - A session is invalidated 2 × TTL after its last renew, as Consul's servers
 *   do (`SessionTTLMultiplier`), not at 1 × TTL.
 * - Time-driven changes (TTL check expiry, session expiry, the critical-service
 *   reaper) follow the injectable clock and are applied, in time order, when
 *   anything looks at the state; HTTP checks are probed on real timers, the
 *   first probe at once rather than after Consul's random stagger.
 * - Sessions, KV and catalog nodes are server state: they survive
 *   {@linkcode ConsulDouble.restart}; agent services and checks survive it only
 *   through `dataDir`, like a real agent's data directory.
 * - TCP, gRPC, script and alias checks are accepted and listed but never run.
 * - Blocking queries (`?index`, `?wait`) answer at once; `?filter` is refused.
 * - ACLs: `service:write` implies `service:read` on every service; any known
 *   token may use sessions, KV and the catalog. A request without a token uses
 *   the anonymous token, which has no rights unless `aclTokens[""]` grants some.
 * - Go's JSON decoder messages after `Request decode failed: ` are close
 *   imitations, not byte-exact.
 *
 * @module
 */

/** The rights of one ACL token, as the double models them. */
export interface AclTokenRules {
  /** `service:write` (and so `service:read`) on every service. */
  serviceWrite: boolean;
  /** `agent:read` on this agent's node, needed by `GET /v1/agent/self`. */
  agentRead?: boolean;
  /** AccessorID named in permission errors; a random UUID when omitted. */
  accessorId?: string;
}

/** How to start a {@linkcode ConsulDouble}. */
export interface ConsulDoubleOptions {
  /** Address to listen on (default `127.0.0.1`). */
  hostname?: string;
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** Secret → rights. When set, ACLs are enforced. */
  aclTokens?: Record<string, AclTokenRules>;
  /** Delay before every answer, in milliseconds (default 0). */
  latencyMs?: number;
  /** Where agent services and checks are persisted, as an agent's data dir. */
  dataDir?: string;
  /** Clock in epoch milliseconds (default `Date.now`). */
  now?: () => number;
  /** How often the critical-service reaper runs (Consul: 30 s). */
  reapIntervalMs?: number;
  /** Floor for DeregisterCriticalServiceAfter (Consul: 1 min). */
  deregisterCriticalMinMs?: number;
  /** Floor for HTTP check intervals (Consul: 1 s). */
  minCheckIntervalMs?: number;
  /** This agent's node name (default `consul-double`). */
  nodeName?: string;
  /** Datacenter name (default `dc1`). */
  datacenter?: string;
}

/** One request as the double received it. */
export interface RecordedCall {
  /** Arrival time on the double's clock. */
  at: number;
  /** HTTP method. */
  method: string;
  /** Request target as sent: path and query, still percent-encoded. */
  path: string;
  /** Request body decoded as UTF-8. */
  body: string;
  /** The token the agent would use (`?token`, `X-Consul-Token`, `Authorization: Bearer`). */
  token: string | null;
  /** Status answered; null while unanswered, or when the connection was dropped. */
  status: number | null;
}

/** An injected failure, see {@linkcode ConsulDouble.setFault}. */
export interface Fault {
  /** Status to answer with. */
  status: number;
  /** Plain-text body (default empty). */
  body?: string;
  /** Only requests whose target (path and query) matches; all when omitted. */
  paths?: RegExp;
}

/** Health of a check. */
export type CheckStatus = "passing" | "warning" | "critical";

/** A service as `GET /v1/agent/services` shows it. */
export interface AgentService {
  /** Service instance ID. */
  ID: string;
  /** Service name. */
  Service: string;
  /** Tags, never null. */
  Tags: string[];
  /** Metadata, never null. */
  Meta: Record<string, string>;
  /** Port. */
  Port: number;
  /** Address; empty means "the node's address". */
  Address: string;
  /** Addresses by kind; the agent adds `lan_ipv4`/`wan_ipv4` for an IP address. */
  TaggedAddresses?: Record<string, { Address: string; Port: number }>;
  /** DNS weights. */
  Weights: { Passing: number; Warning: number };
  /** Whether tags may be changed from the catalog. */
  EnableTagOverride: boolean;
  /** Datacenter of the agent. */
  Datacenter: string;
}

/** A check as `GET /v1/agent/checks` shows it. */
export interface AgentCheck {
  /** Node the check runs on. */
  Node: string;
  /** Check ID. */
  CheckID: string;
  /** Check name. */
  Name: string;
  /** Current status. */
  Status: CheckStatus;
  /** Notes given at registration. */
  Notes: string;
  /** Last output. */
  Output: string;
  /** Owning service instance. */
  ServiceID: string;
  /** Owning service name. */
  ServiceName: string;
  /** Tags of the owning service at registration. */
  ServiceTags: string[];
  /** `http`, `ttl`, `tcp`, … */
  Type: string;
  /** Interval as a Go duration, or empty. */
  Interval: string;
  /** Timeout as a Go duration, or empty. */
  Timeout: string;
  /** Exposed port (always 0 here). */
  ExposedPort: number;
  /** How the check is run. */
  Definition: Record<string, unknown>;
  /** Raft index of creation. */
  CreateIndex: number;
  /** Raft index of the last change. */
  ModifyIndex: number;
}

/** A KV entry as `GET /v1/kv/<key>` shows it. */
export interface KVEntry {
  /** How many times the key has been locked. */
  LockIndex: number;
  /** The key. */
  Key: string;
  /** Opaque flags. */
  Flags: number;
  /** Base64 value, null when empty. */
  Value: string | null;
  /** Holding session, if locked. */
  Session?: string;
  /** Raft index of creation. */
  CreateIndex: number;
  /** Raft index of the last change. */
  ModifyIndex: number;
}

/** A session as `PUT /v1/session/renew/<id>` shows it. */
export interface SessionEntry {
  /** Session ID. */
  ID: string;
  /** Name given at creation. */
  Name: string;
  /** Node the session belongs to. */
  Node: string;
  /** Lock delay in nanoseconds. */
  LockDelay: number;
  /** `release` or `delete`. */
  Behavior: string;
  /** TTL as given, empty for none. */
  TTL: string;
  /** Node checks tied to the session. */
  NodeChecks: string[];
  /** Service checks tied to the session (never used here). */
  ServiceChecks: null;
  /** Raft index of creation. */
  CreateIndex: number;
  /** Raft index of the last change. */
  ModifyIndex: number;
}

const CONSUL_VERSION = "1.21.4";
/** Consul's `SessionTTLMultiplier`: servers wait this many TTLs before invalidating. */
const SESSION_TTL_MULTIPLIER = 2;
/** Consul's `structs.MaxLockDelay`. */
const MAX_LOCK_DELAY_MS = 60_000;
/** Consul's session TTL bounds (`session_ttl_min` default, `SessionTTLMax`). */
const SESSION_TTL_MIN_NS = 10e9;
const SESSION_TTL_MAX_NS = 86_400e9;
/** Consul's default session lock delay. */
const DEFAULT_LOCK_DELAY_NS = 15e9;
/** Consul's `lockDelayMinThreshold`: smaller numbers are taken as seconds. */
const LOCK_DELAY_MIN_THRESHOLD_NS = 1000;
/** Consul's `checks.DefaultBufSize`: check output is cut to this many bytes. */
const CHECK_BUF_SIZE = 4096;
/** Go's `http.Client` timeout Consul uses when a check names none. */
const DEFAULT_CHECK_TIMEOUT_MS = 10_000;
/** Go's `http.DefaultMaxHeaderBytes`. */
const MAX_HEAD_BYTES = 1 << 20;

const NS_PER_MS = 1e6;
/** Consul's fixed AccessorID of the anonymous token. */
const ANONYMOUS_ACCESSOR_ID = "00000000-0000-0000-0000-000000000002";
const ANONYMOUS_SUFFIX =
  ". The anonymous token is used implicitly when a request does not specify a token.";
const TEXT_PLAIN = "text/plain; charset=utf-8";
/** How a client agent's RPC pool prefixes errors coming back from the servers. */
const RPC_ERROR = "rpc error making call: ";

// ---------------------------------------------------------------------------
// Go durations

const DURATION_UNITS: Record<string, number> = {
  ns: 1,
  us: 1e3,
  "\u00b5s": 1e3,
  "\u03bcs": 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/** Go's `time.ParseDuration`, in nanoseconds, with Go's error texts. */
function parseGoDuration(input: string): number {
  const quoted = JSON.stringify(input);
  let s = input;
  let negative = false;
  if (s.startsWith("-") || s.startsWith("+")) {
    negative = s[0] === "-";
    s = s.slice(1);
  }
  if (s === "0") return 0;
  if (s === "") throw new DecodeError(`time: invalid duration ${quoted}`);
  let total = 0;
  while (s !== "") {
    const number = /^([0-9]*)(?:\.([0-9]*))?/.exec(s) ?? ["", "", undefined];
    const whole = number[1] ?? "";
    const frac = number[2] ?? "";
    if (whole === "" && frac === "") throw new DecodeError(`time: invalid duration ${quoted}`);
    s = s.slice(number[0].length);
    const unit = /^[^0-9.]*/.exec(s)?.[0] ?? "";
    if (unit === "") throw new DecodeError(`time: missing unit in duration ${quoted}`);
    const scale = DURATION_UNITS[unit];
    if (scale === undefined) {
      throw new DecodeError(`time: unknown unit ${JSON.stringify(unit)} in duration ${quoted}`);
    }
    s = s.slice(unit.length);
    total += Number(whole || "0") * scale + (frac ? Number(`0.${frac}`) * scale : 0);
  }
  return Math.round(negative ? -total : total);
}

/** Go's `time.Duration.String` for a count of nanoseconds. */
function formatGoDuration(ns: number): string {
  if (ns === 0) return "0s";
  const sign = ns < 0 ? "-" : "";
  let rest = Math.abs(Math.round(ns));
  const frac = (value: number, unit: number, digits: number) => {
    const whole = Math.floor(value / unit);
    const part = String(value % unit).padStart(digits, "0").replace(/0+$/, "");
    return part ? `${whole}.${part}` : `${whole}`;
  };
  if (rest < 1e3) return `${sign}${rest}ns`;
  if (rest < 1e6) return `${sign}${frac(rest, 1e3, 3)}\u00b5s`;
  if (rest < 1e9) return `${sign}${frac(rest, 1e6, 6)}ms`;
  const hours = Math.floor(rest / 3600e9);
  rest -= hours * 3600e9;
  const minutes = Math.floor(rest / 60e9);
  rest -= minutes * 60e9;
  let out = `${frac(rest, 1e9, 9)}s`;
  if (hours > 0 || minutes > 0) out = `${minutes}m${out}`;
  if (hours > 0) out = `${hours}h${out}`;
  return sign + out;
}

// ---------------------------------------------------------------------------
// Request decoding, imitating Go's encoding/json as Consul configures it

class DecodeError extends Error {}

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function jsonKind(v: unknown): string {
  if (Array.isArray(v)) return "array";
  if (v === null) return "null";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "number") return `number ${v}`;
  return typeof v;
}

function mismatch(v: unknown, where: string, goType: string): DecodeError {
  return new DecodeError(
    `json: cannot unmarshal ${jsonKind(v)} into Go struct field ${where} of type ${goType}`,
  );
}

/** Parses a request body as Go's `json.Decoder.Decode` would, empty body = `EOF`. */
function parseJsonBody(body: Uint8Array): unknown {
  const text = new TextDecoder().decode(body);
  if (text.trim() === "") throw new DecodeError("EOF");
  try {
    return JSON.parse(text);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const at = Number(/position (\d+)/.exec(message)?.[1] ?? text.length);
    if (/end of JSON input/i.test(message) || at >= text.trimEnd().length) {
      throw new DecodeError("unexpected EOF");
    }
    throw new DecodeError(`invalid character '${text[at]}' looking for beginning of value`);
  }
}

/** Go's encoding/json matches keys case-insensitively, preferring an exact match. */
function field(obj: JsonObject, name: string): unknown {
  if (name in obj) return obj[name];
  const lower = name.toLowerCase();
  for (const [key, value] of Object.entries(obj)) {
    if (key.toLowerCase() === lower) return value;
  }
  return undefined;
}

function asString(v: unknown, where: string): string {
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw mismatch(v, where, "string");
  return v;
}

function asInt(v: unknown, where: string): number {
  if (v === undefined || v === null) return 0;
  if (typeof v !== "number" || !Number.isInteger(v)) throw mismatch(v, where, "int");
  return v;
}

function asBool(v: unknown, where: string): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") throw mismatch(v, where, "bool");
  return v;
}

function asStringList(v: unknown, where: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw mismatch(v, where, "[]string");
  return v.map((item) => {
    if (typeof item !== "string") throw mismatch(item, where, "string");
    return item;
  });
}

function asStringMap(v: unknown, where: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw mismatch(v, where, "map[string]string");
  const out: Record<string, string> = {};
  for (const [k, item] of Object.entries(v)) {
    if (typeof item !== "string") throw mismatch(item, where, "string");
    out[k] = item;
  }
  return out;
}

/** `CheckType.UnmarshalJSON` takes a duration as a Go string or as nanoseconds. */
function asDuration(v: unknown): number {
  if (typeof v === "string") return parseGoDuration(v);
  if (typeof v === "number") return Math.round(v);
  return 0;
}

/** Every key `structs.CheckType` accepts (it rejects unknown ones), lower-cased. */
const CHECK_TYPE_KEYS = new Set(
  (
    "CheckID Name Status Notes ScriptArgs HTTP H2PING H2PingUseTLS Header Method Body " +
    "DisableRedirects TCP TCPUseTLS UDP Interval AliasNode AliasService DockerContainerID Shell " +
    "GRPC GRPCUseTLS OSService TLSServerName TLSSkipVerify Timeout TTL SuccessBeforePassing " +
    "FailuresBeforeWarning FailuresBeforeCritical ProxyHTTP ProxyGRPC " +
    "DeregisterCriticalServiceAfter OutputMaxSize args script_args " +
    "deregister_critical_service_after docker_container_id tls_server_name tls_skip_verify " +
    "grpc_use_tls h2ping_use_tls ServiceID service_id "
  ).trim().split(" ").map((k) => k.toLowerCase()),
);

/** What the double keeps of a check definition; also its persisted form. */
interface CheckDefinition {
  id: string;
  name: string;
  serviceId: string;
  notes: string;
  type: string;
  http: string;
  method: string;
  header: Record<string, string[]>;
  body: string;
  disableRedirects: boolean;
  intervalNs: number;
  timeoutNs: number;
  ttlNs: number;
  deregisterAfterNs: number;
  initialStatus: CheckStatus;
}

/** A decoded check before the agent gives it an ID and a service. */
interface CheckRequest {
  empty: boolean;
  checkId: string;
  name: string;
  status: string;
  notes: string;
  http: string;
  method: string;
  header: Record<string, string[]>;
  body: string;
  disableRedirects: boolean;
  intervalNs: number;
  timeoutNs: number;
  ttlNs: number;
  deregisterAfterNs: number;
  intervalKind: boolean;
  alias: boolean;
  type: string;
  outputMaxSize: number;
  failuresBeforeWarning: number;
  failuresBeforeCritical: number;
}

function isZero(v: unknown): boolean {
  if (v === null || v === undefined || v === "" || v === 0 || v === false) return true;
  if (Array.isArray(v)) return v.length === 0;
  return isObject(v) && Object.keys(v).length === 0;
}

function decodeCheck(raw: unknown, where: string): CheckRequest | null {
  if (raw === null || raw === undefined) return null;
  if (!isObject(raw)) throw mismatch(raw, where, "structs.CheckType");
  for (const key of Object.keys(raw)) {
    if (!CHECK_TYPE_KEYS.has(key.toLowerCase())) {
      throw new DecodeError(`json: unknown field ${JSON.stringify(key)}`);
    }
  }
  const f = (name: string) => field(raw, name);
  const s = (name: string) => asString(f(name), `CheckType.${name}`);
  const header: Record<string, string[]> = {};
  const rawHeader = f("Header");
  if (rawHeader !== undefined && rawHeader !== null) {
    if (!isObject(rawHeader)) throw mismatch(rawHeader, "CheckType.Header", "map[string][]string");
    for (const [k, v] of Object.entries(rawHeader)) header[k] = asStringList(v, "CheckType.Header");
  }
  const scriptArgs = [
    ...asStringList(f("ScriptArgs"), "CheckType.ScriptArgs"),
    ...asStringList(f("args"), "CheckType.args"),
    ...asStringList(f("script_args"), "CheckType.script_args"),
  ];
  const http = s("HTTP");
  const tcp = s("TCP");
  const udp = s("UDP");
  const grpc = s("GRPC");
  const h2ping = s("H2PING");
  const osService = s("OSService");
  const alias = s("AliasNode") !== "" || s("AliasService") !== "";
  const docker = s("DockerContainerID") !== "";
  const intervalNs = asDuration(f("Interval"));
  const ttlNs = asDuration(f("TTL"));
  const deregister = f("DeregisterCriticalServiceAfter") ??
    f("deregister_critical_service_after");
  const intervalKind = scriptArgs.length > 0 || http !== "" || tcp !== "" || udp !== "" ||
    grpc !== "" || h2ping !== "" || osService !== "";
  const periodic = intervalNs > 0;
  let type = "";
  if (grpc && periodic) type = "grpc";
  else if (http && periodic) type = "http";
  else if (ttlNs > 0) type = "ttl";
  else if (tcp && periodic) type = "tcp";
  else if (udp && periodic) type = "udp";
  else if (alias) type = "alias";
  else if (scriptArgs.length > 0 && docker && periodic) type = "docker";
  else if (scriptArgs.length > 0) type = "script";
  else if (h2ping && periodic) type = "h2ping";
  else if (osService && periodic) type = "os_service";
  return {
    empty: Object.values(raw).every(isZero),
    checkId: s("CheckID"),
    name: s("Name"),
    status: s("Status"),
    notes: s("Notes"),
    http,
    method: s("Method"),
    header,
    body: s("Body"),
    disableRedirects: asBool(f("DisableRedirects"), "CheckType.DisableRedirects"),
    intervalNs,
    timeoutNs: asDuration(f("Timeout")),
    ttlNs,
    deregisterAfterNs: asDuration(deregister),
    intervalKind,
    alias,
    type,
    outputMaxSize: asInt(f("OutputMaxSize"), "CheckType.OutputMaxSize"),
    failuresBeforeWarning: asInt(f("FailuresBeforeWarning"), "CheckType.FailuresBeforeWarning"),
    failuresBeforeCritical: asInt(f("FailuresBeforeCritical"), "CheckType.FailuresBeforeCritical"),
  };
}

/** `structs.CheckType.Validate`, with its texts. */
function checkProblem(c: CheckRequest): string | null {
  if (c.intervalNs > 0 && c.ttlNs > 0) return "Interval and TTL cannot both be specified";
  if (c.intervalKind && c.intervalNs <= 0) {
    return "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks";
  }
  if (c.intervalKind && c.alias) return "Interval cannot be set for Alias checks";
  if (c.alias && c.ttlNs > 0) return "TTL must be not be set for Alias checks";
  if (!c.intervalKind && !c.alias && c.ttlNs <= 0) return "TTL must be > 0 for TTL checks";
  if (c.outputMaxSize < 0) return "MaxOutputMaxSize must be positive";
  if (c.failuresBeforeWarning > c.failuresBeforeCritical) {
    return "FailuresBeforeWarning can't be higher than FailuresBeforeCritical";
  }
  return null;
}

interface ServiceRequest {
  id: string;
  name: string;
  tags: string[];
  address: string;
  port: number;
  meta: Record<string, string>;
  taggedAddresses: Record<string, { Address: string; Port: number }>;
  weights: { Passing: number; Warning: number };
  enableTagOverride: boolean;
  checks: CheckRequest[];
}

function decodeServiceDefinition(raw: unknown): ServiceRequest {
  const out: ServiceRequest = {
    id: "",
    name: "",
    tags: [],
    address: "",
    port: 0,
    meta: {},
    taggedAddresses: {},
    weights: { Passing: 1, Warning: 1 },
    enableTagOverride: false,
    checks: [],
  };
  if (raw === null) return out;
  if (!isObject(raw)) {
    throw new DecodeError(
      `json: cannot unmarshal ${jsonKind(raw)} into Go value of type structs.ServiceDefinition`,
    );
  }
  const f = (name: string) => field(raw, name);
  const where = (name: string) => `ServiceDefinition.${name}`;
  out.id = asString(f("ID"), where("ID"));
  out.name = asString(f("Name"), where("Name"));
  out.tags = asStringList(f("Tags"), where("Tags"));
  out.address = asString(f("Address"), where("Address"));
  out.port = asInt(f("Port"), where("Port"));
  out.meta = asStringMap(f("Meta"), where("Meta"));
  out.enableTagOverride = asBool(f("EnableTagOverride"), where("EnableTagOverride"));
  const tagged = f("TaggedAddresses") ?? f("tagged_addresses");
  if (isObject(tagged)) {
    for (const [kind, v] of Object.entries(tagged)) {
      if (!isObject(v)) throw mismatch(v, where("TaggedAddresses"), "structs.ServiceAddress");
      out.taggedAddresses[kind] = {
        Address: asString(field(v, "Address"), "ServiceAddress.Address"),
        Port: asInt(field(v, "Port"), "ServiceAddress.Port"),
      };
    }
  }
  const weights = f("Weights");
  if (isObject(weights)) {
    out.weights = {
      Passing: asInt(field(weights, "Passing"), "Weights.Passing"),
      Warning: asInt(field(weights, "Warning"), "Weights.Warning"),
    };
  }
  const single = decodeCheck(f("Check"), where("Check"));
  if (single && !single.empty) out.checks.push(single);
  const many = f("Checks");
  if (many !== undefined && many !== null) {
    if (!Array.isArray(many)) throw mismatch(many, where("Checks"), "structs.CheckTypes");
    for (const item of many) {
      const check = decodeCheck(item, where("Checks"));
      if (check) out.checks.push(check);
    }
  }
  return out;
}

const isIPv4 = (s: string) => /^\d{1,3}(\.\d{1,3}){3}$/.test(s);
const isIPv6 = (s: string) => s.includes(":");
/** Consul's `ipaddr.IsAny`. */
const isAnyAddress = (s: string) => ["0.0.0.0", "::", "[::]"].includes(s);

// ---------------------------------------------------------------------------
// A small HTTP/1.1 server with the control a test double needs

interface HttpRequest {
  method: string;
  target: string;
  headers: Headers;
  body: Uint8Array;
}

interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  body: string | Uint8Array;
}

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Request Entity Too Large",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

class ConnReader {
  #conn: Deno.Conn;
  #buf = new Uint8Array(0);

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(16 * 1024);
    const n = await this.#conn.read(chunk);
    if (n === null) return false;
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }

  /** The bytes before the next `\r\n\r\n` (or `\r\n` for a line); null at a clean EOF. */
  async until(delimiter: "\r\n\r\n" | "\r\n"): Promise<string | null> {
    const d = new TextEncoder().encode(delimiter);
    for (;;) {
      const at = indexOf(this.#buf, d);
      if (at >= 0) {
        const out = new TextDecoder("latin1").decode(this.#take(at));
        this.#take(d.length);
        return out;
      }
      if (this.#buf.length > MAX_HEAD_BYTES) throw new Error("request head too large");
      if (!(await this.#fill())) {
        if (this.#buf.length === 0) return null;
        throw new Error("connection closed mid-request");
      }
    }
  }

  async exactly(n: number): Promise<Uint8Array> {
    while (this.#buf.length < n) {
      if (!(await this.#fill())) throw new Error("connection closed mid-body");
    }
    return this.#take(n);
  }
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) offset += await conn.write(data.subarray(offset));
}

async function readRequest(conn: Deno.Conn, reader: ConnReader): Promise<HttpRequest | null> {
  const head = await reader.until("\r\n\r\n");
  if (head === null) return null;
  const [requestLine = "", ...lines] = head.split("\r\n");
  const [method = "", target = "", version = ""] = requestLine.split(" ");
  const headers = new Headers();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  if (version === "HTTP/1.0" && !/keep-alive/i.test(headers.get("connection") ?? "")) {
    headers.set("connection", "close");
  }
  if (/100-continue/i.test(headers.get("expect") ?? "")) {
    await writeAll(conn, new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n"));
  }
  let body: Uint8Array = new Uint8Array(0);
  if (/chunked/i.test(headers.get("transfer-encoding") ?? "")) {
    const parts: Uint8Array[] = [];
    for (;;) {
      const size = parseInt((await reader.until("\r\n"))?.split(";")[0] ?? "", 16);
      if (!Number.isFinite(size)) throw new Error("bad chunk size");
      if (size === 0) {
        while (((await reader.until("\r\n")) ?? "") !== "");
        break;
      }
      parts.push(await reader.exactly(size));
      await reader.exactly(2);
    }
    body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const p of parts) {
      body.set(p, offset);
      offset += p.length;
    }
  } else {
    const length = Number(headers.get("content-length") ?? "0");
    if (length > 0) body = await reader.exactly(length);
  }
  return { method, target, headers, body };
}

function encodeResponse(res: HttpResponse, method: string, close: boolean): Uint8Array {
  const body = typeof res.body === "string" ? new TextEncoder().encode(res.body) : res.body;
  const lines = [`HTTP/1.1 ${res.status} ${REASONS[res.status] ?? `status code ${res.status}`}`];
  for (const [k, v] of Object.entries(res.headers)) lines.push(`${k}: ${v}`);
  lines.push(`Date: ${new Date().toUTCString()}`, `Content-Length: ${body.length}`);
  if (close) lines.push("Connection: close");
  const head = new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n");
  const out = new Uint8Array(head.length + (method === "HEAD" ? 0 : body.length));
  out.set(head);
  if (method !== "HEAD") out.set(body, head.length);
  return out;
}

class MiniHttpServer {
  readonly port: number;
  #listener: Deno.Listener;
  #conns = new Set<Deno.Conn>();
  #loops = new Set<Promise<void>>();
  #accepting: Promise<void>;
  #closed = false;
  #handler: (req: HttpRequest) => Promise<HttpResponse | null>;

  constructor(
    listener: Deno.Listener,
    handler: (req: HttpRequest) => Promise<HttpResponse | null>,
  ) {
    this.#listener = listener;
    this.#handler = handler;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.#accepting = this.#accept();
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        this.#conns.add(conn);
        const loop = this.#serve(conn).finally(() => {
          this.#conns.delete(conn);
          this.#loops.delete(loop);
        });
        this.#loops.add(loop);
      }
    } catch {
      // The listener was closed under the loop: that is how it ends.
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const reader = new ConnReader(conn);
    try {
      while (!this.#closed) {
        const req = await readRequest(conn, reader);
        if (req === null) break;
        const res = await this.#handler(req);
        if (res === null || this.#closed) break;
        const close = /close/i.test(req.headers.get("connection") ?? "");
        await writeAll(conn, encodeResponse(res, req.method, close));
        if (close) break;
      }
    } catch {
      // A client that goes away, or a connection closed by close(), ends the loop.
    } finally {
      try {
        conn.close();
      } catch {
        // Already closed by close().
      }
    }
  }

  /** Stops accepting and drops every connection, answered or not. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#listener.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // Closed by its own loop meanwhile.
      }
    }
    await this.#accepting;
    await Promise.allSettled([...this.#loops]);
  }
}

// ---------------------------------------------------------------------------
// The double

interface ServiceRecord {
  id: string;
  name: string;
  tags: string[];
  address: string;
  port: number;
  meta: Record<string, string>;
  taggedAddresses: Record<string, { Address: string; Port: number }>;
  weights: { Passing: number; Warning: number };
  enableTagOverride: boolean;
  createIndex: number;
  modifyIndex: number;
}

interface CheckRecord {
  def: CheckDefinition;
  serviceName: string;
  serviceTags: string[];
  status: CheckStatus;
  output: string;
  /** When the check last turned critical; unset until a run reports critical, as in Consul. */
  criticalSince?: number;
  ttlDeadline?: number;
  lastTtlOutput: string;
  createIndex: number;
  modifyIndex: number;
  timer?: ReturnType<typeof setTimeout>;
  probe?: AbortController;
}

interface SessionRecord {
  id: string;
  name: string;
  node: string;
  lockDelayNs: number;
  behavior: string;
  ttl: string;
  nodeChecks: string[];
  expiresAt?: number;
  ttlMs: number;
  createIndex: number;
  modifyIndex: number;
}

interface KVRecord {
  key: string;
  flags: number;
  value: Uint8Array | null;
  session: string;
  lockIndex: number;
  createIndex: number;
  modifyIndex: number;
}

type Authz =
  | { acl: false; rpc: boolean }
  | {
    acl: true;
    rpc: boolean;
    anonymous: boolean;
    accessorId: string;
    rules: AclTokenRules | undefined;
  };

type Permission =
  | "service:read"
  | "service:write"
  | "agent:read"
  | "node:write"
  | "session:write"
  | "key:read"
  | "key:write";

interface Ctx {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Headers;
  body: Uint8Array;
  token: string;
}

type Handler = (ctx: Ctx, rest: string) => HttpResponse;

interface Route {
  pattern: string;
  subtree: boolean;
  methods: string[];
  handler: Handler;
}

const json = (value: unknown, headers: Record<string, string> = {}, status = 200) => ({
  status,
  headers: { "Content-Type": "application/json", ...headers },
  body: JSON.stringify(value),
});

const text = (status: number, body: string, headers: Record<string, string> = {}) => ({
  status,
  headers: body === "" ? headers : { "Content-Type": TEXT_PLAIN, ...headers },
  body,
});

const empty = (status = 200, headers: Record<string, string> = {}) => ({
  status,
  headers,
  body: "",
});

const base64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));

const hexName = (id: string) =>
  Array.from(new TextEncoder().encode(id), (b) => b.toString(16).padStart(2, "0")).join("");

/** Resolves once `signal` aborts. */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

/** Resolves once `signal` aborts, or after `ms` (timer cleared on abort). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

/**
 * An in-process stand-in for a Consul agent (and, for sessions and KV, its
 * servers), listening on a real TCP port.
 */
export class ConsulDouble {
  /** Every request received, in arrival order. */
  calls: RecordedCall[] = [];
  /** Delay before every answer, in milliseconds; may be changed at any time. */
  latencyMs: number;

  #port: number;
  #hostname: string;
  #now: () => number;
  #acl: Map<string, AclTokenRules & { accessorId: string }> | undefined;
  #dataDir: string | undefined;
  #reapIntervalMs: number;
  #deregisterMinMs: number;
  #minCheckIntervalMs: number;
  #nodeName: string;
  #datacenter: string;
  #nodeId = crypto.randomUUID();

  #server: MiniHttpServer | undefined;
  #running = false;
  #life = new AbortController();
  #fault: Fault | null = null;
  #hung = false;
  #unhang: () => void = () => {};
  #unhung: Promise<void> = Promise.resolve();
  #probes = new Set<Promise<void>>();
  #probeClient: Deno.HttpClient | undefined;

  #index = 1;
  #catalogIndex = 1;
  #kvIndex = 1;
  #services = new Map<string, ServiceRecord>();
  #checks = new Map<string, CheckRecord>();
  #nextReapAt = 0;
  #sessions = new Map<string, SessionRecord>();
  #kv = new Map<string, KVRecord>();
  #lockDelays = new Map<string, number>();
  #nodes = new Set<string>();
  #routes: Route[];

  private constructor(opts: ConsulDoubleOptions) {
    this.#hostname = opts.hostname ?? "127.0.0.1";
    this.#port = opts.port ?? 0;
    this.#now = opts.now ?? Date.now;
    this.latencyMs = opts.latencyMs ?? 0;
    this.#dataDir = opts.dataDir;
    this.#reapIntervalMs = opts.reapIntervalMs ?? 30_000;
    this.#deregisterMinMs = opts.deregisterCriticalMinMs ?? 60_000;
    this.#minCheckIntervalMs = opts.minCheckIntervalMs ?? 1000;
    this.#nodeName = opts.nodeName ?? "consul-double";
    this.#datacenter = opts.datacenter ?? "dc1";
    this.#nodes.add(this.#nodeName);
    if (opts.aclTokens) {
      this.#acl = new Map(
        Object.entries(opts.aclTokens).map((
          [secret, rules],
        ) => [secret, { ...rules, accessorId: rules.accessorId ?? crypto.randomUUID() }]),
      );
    }
    this.#routes = this.#buildRoutes();
  }

  /** Starts a double; with `dataDir`, services and checks persisted there are restored. */
  static async start(opts: ConsulDoubleOptions = {}): Promise<ConsulDouble> {
    const double = new ConsulDouble(opts);
    await double.#boot();
    return double;
  }

  /** Port the double listens on. */
  get port(): number {
    return this.#port;
  }

  /** Base URL for clients, e.g. `http://127.0.0.1:8500`. */
  get url(): string {
    const host = this.#hostname === "0.0.0.0"
      ? "127.0.0.1"
      : this.#hostname === "::"
      ? "[::1]"
      : isIPv6(this.#hostname)
      ? `[${this.#hostname}]`
      : this.#hostname;
    return `http://${host}:${this.#port}`;
  }

  /** The agent's services now, as `GET /v1/agent/services` would list them. */
  services(): AgentService[] {
    this.#advance();
    return [...this.#services.values()].map((s) => this.#agentServiceJson(s));
  }

  /** The agent's checks now, as `GET /v1/agent/checks` would list them. */
  checks(): AgentCheck[] {
    this.#advance();
    return [...this.#checks.values()].map((c) => this.#checkJson(c));
  }

  /**
   * The instances `GET /v1/health/service/<name>?passing` would return now.
   * Empty while the double is stopped: the servers would mark the node's
   * `serfHealth` critical.
   */
  passingInstances(name: string): AgentService[] {
    this.#advance();
    if (!this.#running) return [];
    return [...this.#services.values()]
      .filter((s) =>
        s.name === name && this.#serviceChecks(s.id).every((c) => c.status === "passing")
      )
      .map((s) => this.#agentServiceJson(s));
  }

  /** A KV entry now, as `GET /v1/kv/<key>` would return it, or undefined. */
  kv(key: string): KVEntry | undefined {
    this.#advance();
    const entry = this.#kv.get(key);
    return entry && this.#kvJson(entry);
  }

  /** The live sessions now. */
  sessions(): SessionEntry[] {
    this.#advance();
    return [...this.#sessions.values()].map((s) => this.#sessionJson(s));
  }

  /** Answers matching requests with `fault` instead of handling them; null clears it. */
  setFault(fault: null | Fault): void {
    this.#fault = fault;
  }

  /**
   * While on, requests are read but not answered. Turning it off answers the
   * held ones (as a resumed, frozen agent would); {@linkcode stop} drops them.
   */
  hang(on: boolean): void {
    if (on === this.#hung) return;
    this.#hung = on;
    if (on) {
      this.#unhung = new Promise((resolve) => this.#unhang = resolve);
    } else {
      this.#unhang();
    }
  }

  /** Makes the agent forget a service and its checks, as a wiped data dir would. */
  forget(serviceId: string): void {
    this.#advance();
    this.#removeService(serviceId);
  }

  /** Closes the listener, drops every connection and stops running checks. */
  async stop(): Promise<void> {
    this.#advance();
    this.#running = false;
    this.#life.abort();
    for (const c of this.#checks.values()) this.#stopProbe(c);
    await this.#server?.close();
    this.#server = undefined;
    await Promise.allSettled([...this.#probes]);
    this.#probeClient?.close();
    this.#probeClient = undefined;
  }

  /**
   * Simulates an agent restart: stop, then start on the same port. Agent
   * services and checks come back only from `dataDir`, checks in their initial
   * state (critical unless registered with a Status; a TTL check's last state
   * while its TTL has not run out). Sessions and KV, held by the servers, stay.
   */
  async restart(): Promise<void> {
    await this.stop();
    await this.#boot();
  }

  /**
   * Polls `pred` every 10 ms until it holds.
   * @throws {Error} when `timeoutMs` passes first, naming `what`.
   */
  async waitFor(
    pred: (d: ConsulDouble) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!pred(this)) {
      if (performance.now() >= deadline) {
        throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  // -- lifecycle -------------------------------------------------------------

  async #boot(): Promise<void> {
    this.#services.clear();
    this.#checks.clear();
    this.#life = new AbortController();
    this.#probeClient = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
    this.#running = true;
    this.#nextReapAt = this.#now() + this.#reapIntervalMs;
    this.#restorePersisted();
    const listener = await this.#listen();
    this.#server = new MiniHttpServer(listener, (req) => this.#onRequest(req));
    this.#port = this.#server.port;
  }

  async #listen(): Promise<Deno.Listener> {
    // A port just released can stay busy for a moment; the restarted agent retries.
    for (let attempt = 0;; attempt++) {
      try {
        return Deno.listen({ hostname: this.#hostname, port: this.#port });
      } catch (e) {
        if (!(e instanceof Deno.errors.AddrInUse) || this.#port === 0 || attempt >= 100) throw e;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }

  // -- request plumbing --------------------------------------------------------

  async #onRequest(req: HttpRequest): Promise<HttpResponse | null> {
    const url = new URL(req.target, "http://double");
    const token = this.#tokenOf(url.searchParams, req.headers);
    const call: RecordedCall = {
      at: this.#now(),
      method: req.method,
      path: req.target,
      body: new TextDecoder().decode(req.body),
      token,
      status: null,
    };
    this.calls.push(call);
    const life = this.#life.signal;
    if (this.#hung) await Promise.race([this.#unhung, aborted(life)]);
    if (this.latencyMs > 0) await sleep(this.latencyMs, life);
    if (life.aborted) return null;
    const res = this.#answer(req, url, token ?? "");
    call.status = res.status;
    return res;
  }

  #tokenOf(query: URLSearchParams, headers: Headers): string | null {
    const fromQuery = query.get("token");
    if (fromQuery) return fromQuery;
    const header = headers.get("x-consul-token");
    if (header) return header;
    const parts = (headers.get("authorization") ?? "").split(" ");
    if (parts.length > 1 && parts[0].toLowerCase() === "bearer") {
      return parts.slice(1).join(" ").trim().split(" ")[0].trim();
    }
    return null;
  }

  #answer(req: HttpRequest, url: URL, token: string): HttpResponse {
    const fault = this.#fault;
    if (fault && (!fault.paths || fault.paths.test(req.target))) {
      return text(fault.status, fault.body ?? "");
    }
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      return text(400, "400 Bad Request");
    }
    this.#advance();
    const route = this.#routes.find((r) =>
      r.subtree ? path.startsWith(r.pattern) : path === r.pattern
    );
    if (!route) return this.#indexPage(path);
    const common = {
      "Vary": "Accept-Encoding",
      "X-Consul-Default-Acl-Policy": this.#acl ? "deny" : "allow",
    };
    const withCommon = (res: HttpResponse) => ({
      ...res,
      headers: { ...common, ...res.headers },
    });
    if (req.method === "OPTIONS") {
      return withCommon(empty(200, { "Allow": ["OPTIONS", ...route.methods].join(",") }));
    }
    if (!route.methods.includes(req.method)) {
      return withCommon(
        text(405, `method ${req.method} not allowed`, {
          "Allow": ["OPTIONS", ...route.methods].join(","),
        }),
      );
    }
    const ctx: Ctx = {
      method: req.method,
      path,
      query: url.searchParams,
      headers: req.headers,
      body: req.body,
      token,
    };
    return withCommon(route.handler(ctx, path.slice(route.pattern.length)));
  }

  /** Consul's catch-all handler for paths no endpoint claims. */
  #indexPage(path: string): HttpResponse {
    if (path === "/") {
      return text(
        200,
        "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart.",
      );
    }
    return text(
      404,
      path.includes("/v1/")
        ? "Invalid URL path: not a recognized HTTP API endpoint\n"
        : "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n",
    );
  }

  #buildRoutes(): Route[] {
    const r = (pattern: string, methods: string[], handler: Handler): Route => ({
      pattern,
      subtree: pattern.endsWith("/"),
      methods,
      handler,
    });
    const routes = [
      r("/v1/agent/self", ["GET"], (ctx) => this.#agentSelf(ctx)),
      r("/v1/agent/services", ["GET"], (ctx) => this.#agentServices(ctx)),
      r("/v1/agent/service/", ["GET"], (ctx, id) => this.#agentService(ctx, id)),
      r("/v1/agent/checks", ["GET"], (ctx) => this.#agentChecks(ctx)),
      r("/v1/agent/service/register", ["PUT"], (ctx) => this.#register(ctx)),
      r("/v1/agent/service/deregister/", ["PUT"], (ctx, id) => this.#deregister(ctx, id)),
      r("/v1/agent/check/pass/", ["PUT"], (ctx, id) => this.#checkPing(ctx, id, "passing")),
      r("/v1/agent/check/warn/", ["PUT"], (ctx, id) => this.#checkPing(ctx, id, "warning")),
      r("/v1/agent/check/fail/", ["PUT"], (ctx, id) => this.#checkPing(ctx, id, "critical")),
      r("/v1/agent/check/update/", ["PUT"], (ctx, id) => this.#checkUpdate(ctx, id)),
      r("/v1/health/service/", ["GET"], (ctx, name) => this.#healthService(ctx, name)),
      r("/v1/catalog/register", ["PUT"], (ctx) => this.#catalogRegister(ctx)),
      r("/v1/session/create", ["PUT"], (ctx) => this.#sessionCreate(ctx)),
      r("/v1/session/renew/", ["PUT"], (ctx, id) => this.#sessionRenew(ctx, id)),
      r("/v1/session/destroy/", ["PUT"], (ctx, id) => this.#sessionDestroy(ctx, id)),
      r("/v1/kv/", ["GET", "PUT", "DELETE"], (ctx, key) => this.#kvEndpoint(ctx, key)),
    ];
    // Go's ServeMux: the longest matching pattern wins.
    return routes.sort((a, b) => b.pattern.length - a.pattern.length);
  }

  // -- ACLs ------------------------------------------------------------------

  /**
   * Resolves the request token; a 403 `ACL not found` response for an unknown
   * one. `rpc` marks endpoints the agent forwards to its servers: their errors
   * come back through the RPC pool, which prefixes them.
   */
  #authz(ctx: Ctx, rpc = false): Authz | HttpResponse {
    if (!this.#acl) return { acl: false, rpc };
    if (ctx.token === "") {
      const rules = this.#acl.get("");
      return { acl: true, rpc, anonymous: true, accessorId: ANONYMOUS_ACCESSOR_ID, rules };
    }
    const rules = this.#acl.get(ctx.token);
    if (!rules) return text(403, `${rpc ? RPC_ERROR : ""}ACL not found`);
    return { acl: true, rpc, anonymous: false, accessorId: rules.accessorId, rules };
  }

  #allows(authz: Authz, permission: Permission): boolean {
    if (!authz.acl) return true;
    const rules = authz.rules;
    if (!rules) return false;
    if (permission === "service:read" || permission === "service:write") return rules.serviceWrite;
    if (permission === "agent:read") return rules.agentRead === true;
    return true;
  }

  #denied(authz: Authz, permission: Permission, resource: string): HttpResponse {
    const prefix = authz.rpc ? RPC_ERROR : "";
    const on = `lacks permission '${permission}' on ${JSON.stringify(resource)}`;
    if (authz.acl && authz.anonymous) {
      return text(403, `${prefix}Permission denied: anonymous token ${on}${ANONYMOUS_SUFFIX}`);
    }
    const accessor = authz.acl ? authz.accessorId : "";
    return text(403, `${prefix}Permission denied: token with AccessorID '${accessor}' ${on}`);
  }

  // -- agent endpoints -----------------------------------------------------------

  #agentSelf(ctx: Ctx): HttpResponse {
    const authz = this.#authz(ctx);
    if ("status" in authz) return authz;
    if (!this.#allows(authz, "agent:read")) {
      return this.#denied(authz, "agent:read", this.#nodeName);
    }
    return json({
      Config: {
        Datacenter: this.#datacenter,
        PrimaryDatacenter: this.#datacenter,
        NodeName: this.#nodeName,
        NodeID: this.#nodeId,
        Revision: "double",
        Server: false,
        Version: CONSUL_VERSION,
        BuildDate: "2025-01-01T00:00:00Z",
      },
      DebugConfig: {},
      Coord: null,
      Member: {
        Name: this.#nodeName,
        Addr: this.#nodeAddress(),
        Port: 8301,
        Tags: { dc: this.#datacenter, role: "node", build: CONSUL_VERSION, id: this.#nodeId },
        Status: 1,
        ProtocolMin: 1,
        ProtocolMax: 5,
        ProtocolCur: 2,
        DelegateMin: 2,
        DelegateMax: 5,
        DelegateCur: 4,
      },
      Stats: {},
      Meta: { "consul-network-segment": "", "consul-version": CONSUL_VERSION },
    });
  }

  #agentServices(ctx: Ctx): HttpResponse {
    const authz = this.#authz(ctx);
    if ("status" in authz) return authz;
    if (ctx.query.has("filter")) return text(400, "the Consul double does not implement ?filter");
    const out: Record<string, AgentService> = {};
    if (this.#allows(authz, "service:read")) {
      for (const s of this.#services.values()) out[s.id] = this.#agentServiceJson(s);
    }
    return json(out);
  }

  #agentService(ctx: Ctx, id: string): HttpResponse {
    const authz = this.#authz(ctx);
    if ("status" in authz) return authz;
    const s = this.#services.get(id);
    if (!s) return text(404, `unknown service ID: ${id}`);
    if (!this.#allows(authz, "service:read")) return this.#denied(authz, "service:read", s.name);
    const body = this.#agentServiceJson(s);
    const hash = this.#contentHash(JSON.stringify(body));
    return json({ ...body, ContentHash: hash }, { "X-Consul-Contenthash": hash });
  }

  #agentChecks(ctx: Ctx): HttpResponse {
    const authz = this.#authz(ctx);
    if ("status" in authz) return authz;
    if (ctx.query.has("filter")) return text(400, "the Consul double does not implement ?filter");
    const out: Record<string, AgentCheck> = {};
    if (this.#allows(authz, "service:read")) {
      for (const c of this.#checks.values()) out[c.def.id] = this.#checkJson(c);
    }
    return json(out);
  }

  #register(ctx: Ctx): HttpResponse {
    let def: ServiceRequest;
    try {
      def = decodeServiceDefinition(parseJsonBody(ctx.body));
    } catch (e) {
      if (e instanceof DecodeError) return text(400, `Request decode failed: ${e.message}`);
      throw e;
    }
    if (def.name === "") return text(400, "Missing service name");
    if (isAnyAddress(def.address)) return text(400, "Invalid service address");
    const authz = this.#authz(ctx);
    if ("status" in authz) return authz;
    for (const check of def.checks) {
      const problem = checkProblem(check);
      if (problem) return text(400, `Invalid check: ${problem}`);
      if (check.status !== "" && !["passing", "warning", "critical"].includes(check.status)) {
        return text(400, "Status for checks must 'passing', 'warning', 'critical'");
      }
    }
    if (!this.#allows(authz, "service:write")) {
      return this.#denied(authz, "service:write", def.name);
    }
    const id = def.id || def.name;
    const replace = ctx.query.has("replace-existing-checks") &&
      ["", "true"].includes(ctx.query.get("replace-existing-checks") ?? "");
    this.#addService(def, id, replace);
    return empty();
  }

  #deregister(ctx: Ctx, id: string): HttpResponse {
    const authz = this.#authz(ctx);
    if ("status" in authz) return authz;
    const s = this.#services.get(id);
    if (!s) {
      return text(
        404,
        `Unknown service ID ${
          JSON.stringify(id)
        }. Ensure that the service ID is passed, not the service name.`,
      );
    }
    if (!this.#allows(authz, "service:write")) return this.#denied(authz, "service:write", s.name);
    this.#removeService(id);
    return empty();
  }

  #checkPing(ctx: Ctx, id: string, status: CheckStatus): HttpResponse {
    return this.#updateTtl(ctx, id, status, ctx.query.get("note") ?? "");
  }

  #checkUpdate(ctx: Ctx, id: string): HttpResponse {
    let status: string;
    let output: string;
    try {
      const body = parseJsonBody(ctx.body);
      if (!isObject(body)) {
        throw new DecodeError(
          `json: cannot unmarshal ${jsonKind(body)} into Go value of type agent.checkUpdate`,
        );
      }
      for (const key of Object.keys(body)) {
        if (!["status", "output"].includes(key.toLowerCase())) {
          throw new DecodeError(`json: unknown field ${JSON.stringify(key)}`);
        }
      }
      status = asString(field(body, "Status"), "checkUpdate.Status");
      output = asString(field(body, "Output"), "checkUpdate.Output");
    } catch (e) {
      if (e instanceof DecodeError) return text(400, `Request decode failed: ${e.message}`);
      throw e;
    }
    if (status !== "passing" && status !== "warning" && status !== "critical") {
      return text(400, `Invalid check status: '${status}'`);
    }
    return this.#updateTtl(ctx, id, status, output);
  }

  #updateTtl(ctx: Ctx, id: string, status: CheckStatus, output: string): HttpResponse {
    const authz = this.#authz(ctx);
    if ("status" in authz) return authz;
    const c = this.#checks.get(id);
    if (!c) {
      return text(
        404,
        `Unknown check ID ${
          JSON.stringify(id)
        }. Ensure that the check ID is passed, not the check name.`,
      );
    }
    if (!this.#allows(authz, "service:write")) {
      return this.#denied(authz, "service:write", c.serviceName);
    }
    if (c.def.type !== "ttl") {
      return text(500, `CheckID ${JSON.stringify(id)} does not have associated TTL`);
    }
    const now = this.#now();
    const cut = output.length > CHECK_BUF_SIZE
      ? `${
        output.slice(0, CHECK_BUF_SIZE)
      } ... (captured ${CHECK_BUF_SIZE} of ${output.length} bytes)`
      : output;
    this.#setStatus(c, status, cut, now);
    c.lastTtlOutput = cut;
    c.ttlDeadline = now + c.def.ttlNs / NS_PER_MS;
    this.#persist(`checks/state/${hexName(id)}.json`, {
      CheckID: id,
      Status: status,
      Output: cut,
      Expires: c.ttlDeadline,
    });
    return empty();
  }

  #healthService(ctx: Ctx, name: string): HttpResponse {
    const parsed = this.#parseQueryOptions(ctx);
    if ("status" in parsed) return parsed;
    if (name === "") return text(400, "Missing service name");
    const authz = this.#authz(ctx, true);
    if ("status" in authz) return authz;
    let passingOnly = false;
    if (ctx.query.has("passing")) {
      const v = (ctx.query.get("passing") ?? "").toLowerCase();
      if (v === "" || ["1", "t", "true"].includes(v)) passingOnly = true;
      else if (!["0", "f", "false"].includes(v)) return text(400, "Invalid value for ?passing");
    }
    const tags = ctx.query.getAll("tag");
    const matching = [...this.#services.values()].filter((s) =>
      s.name === name && tags.every((t) => s.tags.includes(t))
    );
    const visible = this.#allows(authz, "service:read") ? matching : [];
    const entries = visible
      .map((s) => ({
        Node: this.#nodeJson(),
        Service: this.#catalogServiceJson(s),
        Checks: [
          this.#serfHealthJson(),
          ...this.#serviceChecks(s.id).map((c) => this.#checkJson(c)),
        ],
      }))
      .filter((e) => !passingOnly || e.Checks.every((c) => c.Status === "passing"));
    const headers = this.#queryMeta(this.#catalogIndex, parsed.consistency);
    if (ctx.token !== "" && visible.length !== matching.length) {
      headers["X-Consul-Results-Filtered-By-Acls"] = "true";
    }
    return json(entries, headers);
  }

  // -- catalog, sessions, KV ---------------------------------------------------

  #catalogRegister(ctx: Ctx): HttpResponse {
    let body: unknown;
    try {
      body = parseJsonBody(ctx.body);
    } catch (e) {
      if (e instanceof DecodeError) return text(400, `Request decode failed: ${e.message}`);
      throw e;
    }
    const node = isObject(body) ? field(body, "Node") : undefined;
    const address = isObject(body) ? field(body, "Address") : undefined;
    const authz = this.#authz(ctx, true);
    if ("status" in authz) return authz;
    if (typeof node !== "string" || node === "") return text(500, `${RPC_ERROR}Must provide node`);
    if (typeof address !== "string" || address === "") {
      return text(500, `${RPC_ERROR}Must provide address if SkipNodeUpdate is not set`);
    }
    if (!this.#allows(authz, "node:write")) return this.#denied(authz, "node:write", node);
    this.#nodes.add(node);
    this.#bump();
    return json(true);
  }

  #sessionCreate(ctx: Ctx): HttpResponse {
    const session: SessionRecord = {
      id: crypto.randomUUID(),
      name: "",
      node: this.#nodeName,
      lockDelayNs: DEFAULT_LOCK_DELAY_NS,
      behavior: "release",
      ttl: "",
      nodeChecks: ["serfHealth"],
      ttlMs: 0,
      createIndex: 0,
      modifyIndex: 0,
    };
    if (ctx.body.length > 0) {
      try {
        const body = parseJsonBody(ctx.body);
        if (!isObject(body)) throw new DecodeError("expected a map");
        const f = (name: string) => field(body, name);
        session.name = asString(f("Name"), "Session.Name");
        session.node = asString(f("Node"), "Session.Node") || session.node;
        session.behavior = asString(f("Behavior"), "Session.Behavior");
        session.ttl = asString(f("TTL"), "Session.TTL");
        const delay = f("LockDelay");
        if (typeof delay === "string" || typeof delay === "number") {
          const ns = typeof delay === "string" ? parseGoDuration(delay) : delay;
          session.lockDelayNs = ns < LOCK_DELAY_MIN_THRESHOLD_NS ? ns * 1e9 : ns;
        }
        if (f("Checks") !== undefined || f("NodeChecks") !== undefined) {
          session.nodeChecks = [
            ...asStringList(f("Checks"), "Session.Checks"),
            ...asStringList(f("NodeChecks"), "Session.NodeChecks"),
          ];
        }
      } catch (e) {
        if (e instanceof DecodeError) return text(400, `Request decode failed: ${e.message}`);
        throw e;
      }
    }
    const authz = this.#authz(ctx, true);
    if ("status" in authz) return authz;
    if (!this.#allows(authz, "session:write")) {
      return this.#denied(authz, "session:write", session.node);
    }
    const rpcError = (message: string) => text(500, `${RPC_ERROR}${message}`);
    if (session.behavior === "") session.behavior = "release";
    if (session.behavior !== "release" && session.behavior !== "delete") {
      return rpcError(`Invalid Behavior setting '${session.behavior}'`);
    }
    if (session.ttl !== "") {
      let ttlNs: number;
      try {
        ttlNs = parseGoDuration(session.ttl);
      } catch (e) {
        return rpcError(`Session TTL '${session.ttl}' invalid: ${(e as Error).message}`);
      }
      if (ttlNs !== 0 && (ttlNs < SESSION_TTL_MIN_NS || ttlNs > SESSION_TTL_MAX_NS)) {
        return rpcError(
          `Invalid Session TTL '${ttlNs}', must be between [${
            formatGoDuration(SESSION_TTL_MIN_NS)
          }=${formatGoDuration(SESSION_TTL_MAX_NS)}]`,
        );
      }
      session.ttlMs = ttlNs / NS_PER_MS;
    }
    if (!this.#nodes.has(session.node)) return rpcError("Missing node registration");
    session.createIndex = session.modifyIndex = this.#bump();
    if (session.ttlMs > 0) {
      session.expiresAt = this.#now() + session.ttlMs * SESSION_TTL_MULTIPLIER;
    }
    this.#sessions.set(session.id, session);
    return json({ ID: session.id });
  }

  #sessionRenew(ctx: Ctx, id: string): HttpResponse {
    const parsed = this.#parseQueryOptions(ctx);
    if ("status" in parsed) return parsed;
    if (id === "") return text(400, "Missing session");
    const authz = this.#authz(ctx, true);
    if ("status" in authz) return authz;
    const s = this.#sessions.get(id);
    if (!s) return text(404, `Session id '${id}' not found`);
    if (!this.#allows(authz, "session:write")) return this.#denied(authz, "session:write", s.node);
    if (s.ttlMs > 0) s.expiresAt = this.#now() + s.ttlMs * SESSION_TTL_MULTIPLIER;
    return json([this.#sessionJson(s)]);
  }

  #sessionDestroy(ctx: Ctx, id: string): HttpResponse {
    if (id === "") return text(400, "Missing session");
    const authz = this.#authz(ctx, true);
    if ("status" in authz) return authz;
    const s = this.#sessions.get(id);
    if (s && !this.#allows(authz, "session:write")) {
      return this.#denied(authz, "session:write", s.node);
    }
    if (s) this.#invalidateSession(s, this.#now());
    return json(true);
  }

  #kvEndpoint(ctx: Ctx, key: string): HttpResponse {
    const parsed = this.#parseQueryOptions(ctx);
    if ("status" in parsed) return parsed;
    const authz = this.#authz(ctx, true);
    if ("status" in authz) return authz;
    if (ctx.method === "GET") return this.#kvGet(ctx, key, authz, parsed.consistency);
    if (ctx.method === "PUT") return this.#kvPut(ctx, key, authz);
    return this.#kvDelete(ctx, key, authz);
  }

  #kvGet(ctx: Ctx, key: string, authz: Authz, consistency: string): HttpResponse {
    const meta = this.#queryMeta(this.#kvIndex, consistency);
    // Listings are filtered by key:read rather than refused, as Consul's KVS.List does.
    const readable = this.#allows(authz, "key:read") ? [...this.#kv.values()] : [];
    if (ctx.query.has("keys")) {
      const separator = ctx.query.get("separator") ?? ctx.query.get("seperator") ?? "";
      const keys = new Set<string>();
      for (const { key: k } of readable) {
        if (!k.startsWith(key)) continue;
        const cut = separator ? k.indexOf(separator, key.length) : -1;
        keys.add(cut >= 0 ? k.slice(0, cut + separator.length) : k);
      }
      if (keys.size === 0 && key !== "") return empty(404, meta);
      return json([...keys].sort(), meta);
    }
    if (ctx.query.has("recurse")) {
      const entries = readable
        .filter((e) => e.key.startsWith(key))
        .sort((a, b) => (a.key < b.key ? -1 : 1));
      if (entries.length === 0) return empty(404, meta);
      return json(entries.map((e) => this.#kvJson(e)), meta);
    }
    if (key === "") return text(400, "Missing key name");
    if (!this.#allows(authz, "key:read")) return this.#denied(authz, "key:read", key);
    const entry = this.#kv.get(key);
    if (!entry) return empty(404, meta);
    if (ctx.query.has("raw")) {
      return {
        status: 200,
        headers: {
          ...meta,
          "Content-Type": "text/plain",
          "X-Content-Type-Options": "nosniff",
          "Content-Security-Policy": "sandbox",
        },
        body: entry.value ?? new Uint8Array(0),
      };
    }
    return json([this.#kvJson(entry)], meta);
  }

  #kvPut(ctx: Ctx, key: string, authz: Authz): HttpResponse {
    if (key === "") return text(400, "Missing key name");
    const conflict = this.#conflictingFlags(ctx.query, ["cas", "acquire", "release"]);
    if (conflict) return conflict;
    const flags = this.#parseUint(ctx.query, "flags");
    if (typeof flags !== "number") return flags;
    const cas = this.#parseUint(ctx.query, "cas");
    if (typeof cas !== "number") return cas;
    if (!this.#allows(authz, "key:write")) return this.#denied(authz, "key:write", key);
    const value = ctx.body.length > 0 ? ctx.body : null;
    const existing = this.#kv.get(key);
    if (ctx.query.has("acquire")) {
      const session = ctx.query.get("acquire") ?? "";
      if ((this.#lockDelays.get(key) ?? -Infinity) > this.#now()) return json(false);
      if (session === "") return text(500, `${RPC_ERROR}missing session`);
      if (!this.#sessions.has(session)) {
        return text(500, `${RPC_ERROR}invalid session ${JSON.stringify(session)}`);
      }
      if (existing && existing.session !== "" && existing.session !== session) return json(false);
      const lockIndex = !existing
        ? 1
        : existing.session === session
        ? existing.lockIndex
        : existing.lockIndex + 1;
      this.#kvWrite(key, { flags, value, session, lockIndex });
      return json(true);
    }
    if (ctx.query.has("release")) {
      const session = ctx.query.get("release") ?? "";
      if (session === "") return text(500, `${RPC_ERROR}missing session`);
      if (!existing || existing.session !== session) return json(false);
      this.#kvWrite(key, { flags, value, session: "", lockIndex: existing.lockIndex });
      return json(true);
    }
    if (ctx.query.has("cas")) {
      if (cas === 0 ? existing !== undefined : existing?.modifyIndex !== cas) return json(false);
    }
    // A plain set keeps the holder (Consul's kvsSetTxn without updateSession).
    this.#kvWrite(key, { flags, value, session: existing?.session ?? "", lockIndex: 0 });
    return json(true);
  }

  #kvDelete(ctx: Ctx, key: string, authz: Authz): HttpResponse {
    const conflict = this.#conflictingFlags(ctx.query, ["recurse", "cas"]);
    if (conflict) return conflict;
    const recurse = ctx.query.has("recurse");
    if (!recurse && key === "") return text(400, "Missing key name");
    const cas = this.#parseUint(ctx.query, "cas");
    if (typeof cas !== "number") return cas;
    if (!this.#allows(authz, "key:write")) return this.#denied(authz, "key:write", key);
    if (recurse) {
      for (const k of [...this.#kv.keys()]) if (k.startsWith(key)) this.#kvRemove(k);
      return json(true);
    }
    const existing = this.#kv.get(key);
    if (ctx.query.has("cas")) {
      if (!existing) return json(true);
      if (existing.modifyIndex !== cas) return json(false);
    }
    if (existing) this.#kvRemove(key);
    return json(true);
  }

  #conflictingFlags(query: URLSearchParams, flags: string[]): HttpResponse | null {
    if (flags.filter((f) => query.has(f)).length < 2) return null;
    const sorted = new URLSearchParams([...query.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));
    return text(400, `Conflicting flags: ${sorted.toString()}\n`);
  }

  #parseUint(query: URLSearchParams, name: string): number | HttpResponse {
    if (!query.has(name)) return 0;
    const raw = query.get(name) ?? "";
    if (!/^[0-9]+$/.test(raw)) {
      return text(500, `strconv.ParseUint: parsing ${JSON.stringify(raw)}: invalid syntax`);
    }
    return Number(raw);
  }

  /** `?stale`/`?consistent` and `?wait`/`?index` checks shared by read endpoints. */
  #parseQueryOptions(ctx: Ctx): { consistency: string } | HttpResponse {
    const stale = ctx.query.has("stale");
    const consistent = ctx.query.has("consistent");
    if (stale && consistent) {
      return text(400, "Cannot specify ?stale with ?consistent, conflicting semantics.");
    }
    const wait = ctx.query.get("wait");
    if (wait) {
      try {
        parseGoDuration(wait);
      } catch {
        return text(400, "Invalid wait time");
      }
    }
    const index = ctx.query.get("index");
    if (index && !/^[0-9]+$/.test(index)) return text(400, "Invalid index");
    return { consistency: consistent ? "consistent" : stale ? "stale" : "leader" };
  }

  #queryMeta(index: number, consistency: string): Record<string, string> {
    return {
      "X-Consul-Effective-Consistency": consistency,
      "X-Consul-Index": String(Math.max(index, 1)),
      "X-Consul-Knownleader": "true",
      "X-Consul-Lastcontact": "0",
      "X-Consul-Query-Backend": "blocking-query",
    };
  }

  // -- state changes -----------------------------------------------------------

  #bump(): number {
    return ++this.#index;
  }

  #addService(def: ServiceRequest, id: string, replaceExistingChecks: boolean): void {
    const previous = this.#services.get(id);
    const index = this.#bump();
    const taggedAddresses = { ...def.taggedAddresses };
    const auto = isIPv4(def.address) ? "ipv4" : isIPv6(def.address) ? "ipv6" : "";
    for (const kind of auto ? ["lan", "wan"] : []) {
      taggedAddresses[`${kind}_${auto}`] ??= { Address: def.address, Port: def.port };
    }
    const service: ServiceRecord = {
      id,
      name: def.name,
      tags: def.tags,
      address: def.address,
      port: def.port,
      meta: def.meta,
      taggedAddresses,
      weights: def.weights,
      enableTagOverride: def.enableTagOverride,
      createIndex: previous?.createIndex ?? index,
      modifyIndex: index,
    };
    this.#services.set(id, service);
    this.#persist(`services/${hexName(id)}.json`, service);
    const kept = new Set<string>();
    def.checks.forEach((check, i) => {
      const checkId = check.checkId ||
        (def.checks.length > 1 ? `service:${id}:${i + 1}` : `service:${id}`);
      kept.add(checkId);
      const definition: CheckDefinition = {
        id: checkId,
        name: check.name || `Service '${def.name}' check`,
        serviceId: id,
        notes: check.notes,
        type: check.type,
        http: check.http,
        method: check.method,
        header: check.header,
        body: check.body,
        disableRedirects: check.disableRedirects,
        intervalNs: check.intervalNs,
        timeoutNs: check.timeoutNs,
        ttlNs: check.ttlNs,
        deregisterAfterNs: check.deregisterAfterNs,
        initialStatus: (check.status || "critical") as CheckStatus,
      };
      // Re-registering carries a check's status and output over (Consul's check snapshot).
      const prior = this.#checks.get(checkId);
      this.#addCheck(definition, service, prior && { status: prior.status, output: prior.output });
    });
    if (replaceExistingChecks) {
      for (const c of this.#serviceChecks(id)) if (!kept.has(c.def.id)) this.#removeCheck(c);
    }
    this.#catalogIndex = index;
  }

  #addCheck(
    def: CheckDefinition,
    service: ServiceRecord,
    carried?: { status: CheckStatus; output: string },
  ): void {
    const prior = this.#checks.get(def.id);
    if (prior) this.#stopProbe(prior);
    const index = this.#bump();
    const now = this.#now();
    const record: CheckRecord = {
      def,
      serviceName: service.name,
      serviceTags: service.tags,
      status: carried?.status ?? def.initialStatus,
      output: carried?.output ?? "",
      lastTtlOutput: "",
      createIndex: prior?.createIndex ?? index,
      modifyIndex: index,
      ttlDeadline: def.type === "ttl" ? now + def.ttlNs / NS_PER_MS : undefined,
    };
    this.#checks.set(def.id, record);
    this.#persist(`checks/${hexName(def.id)}.json`, def);
    if (this.#running && def.type === "http") this.#scheduleProbe(record, 0);
  }

  #removeService(id: string): void {
    if (!this.#services.delete(id)) return;
    this.#unpersist(`services/${hexName(id)}.json`);
    for (const c of this.#serviceChecks(id)) this.#removeCheck(c);
    this.#catalogIndex = this.#bump();
  }

  #removeCheck(c: CheckRecord): void {
    this.#stopProbe(c);
    this.#checks.delete(c.def.id);
    this.#unpersist(`checks/${hexName(c.def.id)}.json`);
    this.#unpersist(`checks/state/${hexName(c.def.id)}.json`);
  }

  #serviceChecks(serviceId: string): CheckRecord[] {
    return [...this.#checks.values()].filter((c) => c.def.serviceId === serviceId);
  }

  /** Consul's local-state UpdateCheck: tracks when a check turned critical. */
  #setStatus(c: CheckRecord, status: CheckStatus, output: string, at: number): void {
    if (status === "critical") c.criticalSince ??= at;
    else c.criticalSince = undefined;
    if (c.status === status && c.output === output) return;
    c.status = status;
    c.output = output;
    c.modifyIndex = this.#catalogIndex = this.#bump();
  }

  #invalidateSession(s: SessionRecord, at: number): void {
    this.#sessions.delete(s.id);
    const delayMs = Math.min(s.lockDelayNs / NS_PER_MS, MAX_LOCK_DELAY_MS);
    for (const entry of [...this.#kv.values()]) {
      if (entry.session !== s.id) continue;
      if (s.behavior === "delete") this.#kvRemove(entry.key);
      else {
        const { flags, value, lockIndex } = entry;
        this.#kvWrite(entry.key, { flags, value, session: "", lockIndex });
      }
      if (delayMs > 0) this.#lockDelays.set(entry.key, at + delayMs);
    }
    this.#bump();
  }

  #kvWrite(
    key: string,
    e: { flags: number; value: Uint8Array | null; session: string; lockIndex: number },
  ): void {
    const index = this.#kvIndex = this.#bump();
    const createIndex = this.#kv.get(key)?.createIndex ?? index;
    this.#kv.set(key, { key, ...e, createIndex, modifyIndex: index });
  }

  #kvRemove(key: string): void {
    this.#kv.delete(key);
    this.#kvIndex = this.#bump();
  }

  /**
   * Applies every time-driven change due by now, earliest first, so the state
   * is as if timers had fired on time on the injected clock.
   */
  #advance(): void {
    const now = this.#now();
    for (;;) {
      let at = Infinity;
      let run: ((t: number) => void) | undefined;
      const consider = (t: number | undefined, fn: (t: number) => void) => {
        if (t !== undefined && t <= now && t < at) {
          at = t;
          run = fn;
        }
      };
      for (const s of this.#sessions.values()) {
        consider(s.expiresAt, (t) => this.#invalidateSession(s, t));
      }
      if (this.#running) {
        for (const c of this.#checks.values()) {
          consider(c.ttlDeadline, (t) => {
            c.ttlDeadline = undefined;
            const output = c.lastTtlOutput === ""
              ? "TTL expired"
              : `TTL expired (last output before timeout follows): ${c.lastTtlOutput}`;
            this.#setStatus(c, "critical", output, t);
          });
        }
        consider(this.#nextReapAt, (t) => this.#reap(t));
      }
      if (!run) return;
      run(at);
    }
  }

  /** One pass of Consul's `reapServicesInternal`. */
  #reap(at: number): void {
    this.#nextReapAt = at + this.#reapIntervalMs;
    const reaped = new Set<string>();
    for (const c of [...this.#checks.values()]) {
      const timeoutNs = c.def.deregisterAfterNs;
      if (timeoutNs <= 0 || c.criticalSince === undefined || reaped.has(c.def.serviceId)) continue;
      const timeoutMs = Math.max(timeoutNs / NS_PER_MS, this.#deregisterMinMs);
      if (at - c.criticalSince > timeoutMs) {
        reaped.add(c.def.serviceId);
        this.#removeService(c.def.serviceId);
      }
    }
  }

  // -- HTTP checks -------------------------------------------------------------

  #scheduleProbe(c: CheckRecord, delayMs: number): void {
    c.timer = setTimeout(() => {
      c.timer = undefined;
      const ctl = new AbortController();
      c.probe = ctl;
      const run = this.#probe(c, ctl.signal).finally(() => {
        this.#probes.delete(run);
        if (c.probe !== ctl || ctl.signal.aborted) return;
        c.probe = undefined;
        const intervalMs = Math.max(c.def.intervalNs / NS_PER_MS, this.#minCheckIntervalMs);
        this.#scheduleProbe(c, intervalMs);
      });
      this.#probes.add(run);
    }, delayMs);
  }

  #stopProbe(c: CheckRecord): void {
    clearTimeout(c.timer);
    c.timer = undefined;
    c.probe?.abort();
    c.probe = undefined;
  }

  /** One run of Consul's CheckHTTP, with its status rules and output format. */
  async #probe(c: CheckRecord, stopped: AbortSignal): Promise<void> {
    const method = c.def.method || "GET";
    const url = c.def.http;
    const headers = new Headers();
    for (const [k, values] of Object.entries(c.def.header)) {
      for (const v of values) headers.append(k, v);
    }
    if (!headers.has("user-agent")) headers.set("User-Agent", "Consul Health Check");
    if (!headers.has("accept")) headers.set("Accept", "text/plain, text/*, */*");
    const timeoutMs = c.def.timeoutNs > 0 ? c.def.timeoutNs / NS_PER_MS : DEFAULT_CHECK_TIMEOUT_MS;
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), timeoutMs);
    const goOp = method[0] + method.slice(1).toLowerCase();
    let status: CheckStatus;
    let output: string;
    try {
      const res = await fetch(url, {
        method,
        headers,
        body: c.def.body || undefined,
        redirect: c.def.disableRedirects ? "manual" : "follow",
        signal: AbortSignal.any([stopped, deadline.signal]),
        client: this.#probeClient,
      });
      const bytes = new Uint8Array(await res.arrayBuffer());
      // Consul keeps the last bytes of the body (a circular buffer).
      const tail = new TextDecoder().decode(
        bytes.subarray(Math.max(0, bytes.length - CHECK_BUF_SIZE)),
      );
      output = `HTTP ${method} ${url}: ${res.status} ${res.statusText} Output: ${tail}`;
      status = res.status >= 200 && res.status <= 299
        ? "passing"
        : res.status === 429
        ? "warning"
        : "critical";
    } catch (e) {
      if (stopped.aborted) return;
      status = "critical";
      // Deno wraps the transport error as the cause of a bare "fetch failed".
      let message = e instanceof Error ? e.message : String(e);
      for (let c = e instanceof Error ? e.cause : undefined; c instanceof Error; c = c.cause) {
        message = c.message;
      }
      const host = new URL(url).host;
      output = deadline.signal.aborted
        ? `${goOp} ${
          JSON.stringify(url)
        }: context deadline exceeded (Client.Timeout exceeded while awaiting headers)`
        : /connection refused/i.test(message)
        ? `${goOp} ${JSON.stringify(url)}: dial tcp ${host}: connect: connection refused`
        : `${goOp} ${JSON.stringify(url)}: ${message}`;
    } finally {
      clearTimeout(timer);
    }
    if (stopped.aborted || this.#checks.get(c.def.id) !== c) return;
    this.#advance();
    this.#setStatus(c, status, output, this.#now());
  }

  // -- persistence -------------------------------------------------------------

  #persist(relative: string, value: unknown): void {
    if (!this.#dataDir) return;
    const path = `${this.#dataDir}/${relative}`;
    Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    Deno.writeTextFileSync(path, JSON.stringify(value));
  }

  #unpersist(relative: string): void {
    if (!this.#dataDir) return;
    try {
      Deno.removeSync(`${this.#dataDir}/${relative}`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }

  #readPersisted<T>(dir: string): T[] {
    if (!this.#dataDir) return [];
    const out: T[] = [];
    try {
      for (const entry of Deno.readDirSync(`${this.#dataDir}/${dir}`)) {
        if (entry.isFile && entry.name.endsWith(".json")) {
          out.push(JSON.parse(Deno.readTextFileSync(`${this.#dataDir}/${dir}/${entry.name}`)));
        }
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return out;
  }

  /** What an agent does at start with its data dir: services, checks, then TTL states. */
  #restorePersisted(): void {
    for (const s of this.#readPersisted<ServiceRecord>("services")) this.#services.set(s.id, s);
    const states = new Map(
      this.#readPersisted<
        { CheckID: string; Status: CheckStatus; Output: string; Expires: number }
      >(
        "checks/state",
      ).map((s) => [s.CheckID, s]),
    );
    const now = this.#now();
    for (const def of this.#readPersisted<CheckDefinition>("checks")) {
      const service = this.#services.get(def.serviceId);
      if (!service) continue;
      const state = states.get(def.id);
      const live = state && state.Expires > now;
      this.#addCheck(
        def,
        service,
        live ? { status: state.Status, output: state.Output } : undefined,
      );
    }
  }

  // -- JSON shapes ---------------------------------------------------------------

  #nodeAddress(): string {
    return isAnyAddress(this.#hostname) ? "127.0.0.1" : this.#hostname;
  }

  #agentServiceJson(s: ServiceRecord): AgentService {
    return {
      ID: s.id,
      Service: s.name,
      Tags: [...s.tags],
      Meta: { ...s.meta },
      Port: s.port,
      Address: s.address,
      ...(Object.keys(s.taggedAddresses).length
        ? { TaggedAddresses: { ...s.taggedAddresses } }
        : {}),
      Weights: { ...s.weights },
      EnableTagOverride: s.enableTagOverride,
      Datacenter: this.#datacenter,
    };
  }

  #catalogServiceJson(s: ServiceRecord): Record<string, unknown> {
    return {
      ID: s.id,
      Service: s.name,
      Tags: [...s.tags],
      Address: s.address,
      ...(Object.keys(s.taggedAddresses).length
        ? { TaggedAddresses: { ...s.taggedAddresses } }
        : {}),
      Meta: { ...s.meta },
      Port: s.port,
      Weights: { ...s.weights },
      EnableTagOverride: s.enableTagOverride,
      CreateIndex: s.createIndex,
      ModifyIndex: s.modifyIndex,
    };
  }

  #checkJson(c: CheckRecord): AgentCheck {
    const d = c.def;
    const definition: Record<string, unknown> = {};
    if (d.http) definition.HTTP = d.http;
    if (Object.keys(d.header).length) definition.Header = d.header;
    if (d.method) definition.Method = d.method;
    if (d.body) definition.Body = d.body;
    if (d.intervalNs) definition.Interval = formatGoDuration(d.intervalNs);
    if (d.timeoutNs) definition.Timeout = formatGoDuration(d.timeoutNs);
    if (d.deregisterAfterNs) {
      definition.DeregisterCriticalServiceAfter = formatGoDuration(d.deregisterAfterNs);
    }
    if (d.ttlNs) definition.TTL = formatGoDuration(d.ttlNs);
    return {
      Node: this.#nodeName,
      CheckID: d.id,
      Name: d.name,
      Status: c.status,
      Notes: d.notes,
      Output: c.output,
      ServiceID: d.serviceId,
      ServiceName: c.serviceName,
      ServiceTags: [...c.serviceTags],
      Type: d.type,
      Interval: d.intervalNs ? formatGoDuration(d.intervalNs) : "",
      Timeout: d.timeoutNs ? formatGoDuration(d.timeoutNs) : "",
      ExposedPort: 0,
      Definition: definition,
      CreateIndex: c.createIndex,
      ModifyIndex: c.modifyIndex,
    };
  }

  #serfHealthJson(): AgentCheck {
    return {
      Node: this.#nodeName,
      CheckID: "serfHealth",
      Name: "Serf Health Status",
      Status: "passing",
      Notes: "",
      Output: "Agent alive and reachable",
      ServiceID: "",
      ServiceName: "",
      ServiceTags: [],
      Type: "",
      Interval: "",
      Timeout: "",
      ExposedPort: 0,
      Definition: {},
      CreateIndex: 1,
      ModifyIndex: 1,
    };
  }

  #nodeJson(): Record<string, unknown> {
    const address = this.#nodeAddress();
    return {
      ID: this.#nodeId,
      Node: this.#nodeName,
      Address: address,
      Datacenter: this.#datacenter,
      TaggedAddresses: { lan: address, lan_ipv4: address, wan: address, wan_ipv4: address },
      Meta: { "consul-network-segment": "", "consul-version": CONSUL_VERSION },
      CreateIndex: 1,
      ModifyIndex: 1,
    };
  }

  #kvJson(e: KVRecord): KVEntry {
    return {
      LockIndex: e.lockIndex,
      Key: e.key,
      Flags: e.flags,
      Value: e.value ? base64(e.value) : null,
      ...(e.session ? { Session: e.session } : {}),
      CreateIndex: e.createIndex,
      ModifyIndex: e.modifyIndex,
    };
  }

  #sessionJson(s: SessionRecord): SessionEntry {
    return {
      ID: s.id,
      Name: s.name,
      Node: s.node,
      LockDelay: s.lockDelayNs,
      Behavior: s.behavior,
      TTL: s.ttl,
      NodeChecks: [...s.nodeChecks],
      ServiceChecks: null,
      CreateIndex: s.createIndex,
      ModifyIndex: s.modifyIndex,
    };
  }

  /** A stable digest standing in for Consul's hashstructure ContentHash. */
  #contentHash(body: string): string {
    let h = 0xcbf29ce484222325n;
    for (const byte of new TextEncoder().encode(body)) {
      h = ((h ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
    }
    return h.toString(16).padStart(16, "0");
  }
}
