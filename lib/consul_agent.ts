/**
 * The handful of Consul agent endpoints the supervisor uses, each with a
 * timeout, the token in `X-Consul-Token`, and failures sorted into kinds the
 * core can act on. The token never appears in anything this module returns.
 * @module
 */

import type { ConsulConfig } from "./config.ts";
import { redact } from "./secret.ts";
import { errorText } from "./error_text.ts";

/** Why a request failed, coarse enough to pick a retry policy and a metric label. */
export type ConsulErrorKind = "denied" | "rejected" | "server" | "unreachable" | "timeout";

/** The result of one agent request. */
export type ConsulResult<T = void> =
  | { ok: true; value: T }
  | { ok: false; kind: ConsulErrorKind; status: number | null; message: string };

/** A service definition in the agent's register format. */
export interface ServiceDefinition {
  ID: string;
  Name: string;
  Tags: string[];
  Address: string;
  Port: number;
  Meta: Record<string, string>;
  Checks: Record<string, unknown>[];
}

/** The subset of `GET /v1/agent/service/<id>` we compare against. */
export interface AgentService {
  ID: string;
  Service: string;
  Tags: string[] | null;
  Address: string;
  Port: number;
  Meta: Record<string, string> | null;
}

const MAX_MESSAGE = 300;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Reads an agent's service answer, checking every field we compare: a
 * malformed answer is an "unparsable answer" failure, never a crash later.
 */
export function parseAgentService(body: string): AgentService {
  const v = JSON.parse(body);
  if (!isRecord(v) || typeof v.ID !== "string" || typeof v.Service !== "string") {
    throw new Error("not a service");
  }
  const tags = v.Tags ?? null;
  if (tags !== null && !(Array.isArray(tags) && tags.every((t) => typeof t === "string"))) {
    throw new Error("Tags is not a list of strings");
  }
  const meta = v.Meta ?? null;
  if (
    meta !== null && !(isRecord(meta) && Object.values(meta).every((m) => typeof m === "string"))
  ) {
    throw new Error("Meta is not a map of strings");
  }
  return {
    ID: v.ID,
    Service: v.Service,
    Tags: tags as string[] | null,
    Address: typeof v.Address === "string" ? v.Address : "",
    Port: typeof v.Port === "number" ? v.Port : 0,
    Meta: meta as Record<string, string> | null,
  };
}

/** A client for the local Consul agent. */
export class ConsulAgent {
  readonly #cfg: ConsulConfig;
  readonly #client: Deno.HttpClient | undefined;

  /** Builds a client; a CA certificate, when configured, is trusted for TLS. */
  constructor(cfg: ConsulConfig) {
    this.#cfg = cfg;
    this.#client = cfg.caCert ? Deno.createHttpClient({ caCerts: [cfg.caCert] }) : undefined;
  }

  /** `PUT /v1/agent/service/register` (replacing existing checks, so a changed check is updated). */
  register(def: ServiceDefinition): Promise<ConsulResult> {
    return this.#call("PUT", "/v1/agent/service/register?replace-existing-checks", def, () => {});
  }

  /** `PUT /v1/agent/service/deregister/<id>`; 404 means "already gone" and counts as success. */
  deregister(id: string): Promise<ConsulResult> {
    return this.#call(
      "PUT",
      `/v1/agent/service/deregister/${encodeURIComponent(id)}`,
      undefined,
      () => {},
      true,
    );
  }

  /** `PUT /v1/agent/check/pass/<id>`; an unknown check answers `{ok:true, value:false}`. */
  async passCheck(checkId: string, note: string): Promise<ConsulResult<boolean>> {
    const path = `/v1/agent/check/pass/${encodeURIComponent(checkId)}?note=${
      encodeURIComponent(note)
    }`;
    return await this.#call("PUT", path, undefined, () => true, false, () => false);
  }

  /** `GET /v1/agent/service/<id>`; null when the agent does not know the service. */
  service(id: string): Promise<ConsulResult<AgentService | null>> {
    return this.#call(
      "GET",
      `/v1/agent/service/${encodeURIComponent(id)}`,
      undefined,
      parseAgentService,
      false,
      () => null,
    );
  }

  /** `GET /v1/agent/self`: proves the agent answers and the token may read it. */
  self(): Promise<ConsulResult<Record<string, unknown>>> {
    return this.#call("GET", "/v1/agent/self", undefined, (b) => {
      const v = JSON.parse(b);
      if (!isRecord(v)) throw new Error("not an object");
      return v;
    });
  }

  /** Releases the TLS client, if any. */
  close(): void {
    this.#client?.close();
  }

  async #call<T>(
    method: string,
    path: string,
    body: unknown,
    parse: (body: string) => T,
    notFoundIsOk = false,
    onNotFound?: () => T,
  ): Promise<ConsulResult<T>> {
    const headers: Record<string, string> = {};
    if (this.#cfg.token) headers["X-Consul-Token"] = this.#cfg.token.reveal();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res: Response;
    try {
      res = await fetch(`${this.#cfg.url}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.#cfg.timeoutMs),
        client: this.#client,
      });
    } catch (e) {
      const timeout = e instanceof DOMException && e.name === "TimeoutError";
      return {
        ok: false,
        kind: timeout ? "timeout" : "unreachable",
        status: null,
        message: this.#clean(
          timeout ? `no answer within ${this.#cfg.timeoutMs}ms` : errorText(e),
        ),
      };
    }
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      return {
        ok: false,
        kind: "unreachable",
        status: res.status,
        message: this.#clean(errorText(e)),
      };
    }
    if (res.status === 404 && (notFoundIsOk || onNotFound)) {
      return { ok: true, value: onNotFound ? onNotFound() : parse("") };
    }
    if (res.ok) {
      try {
        return { ok: true, value: parse(text) };
      } catch (e) {
        return {
          ok: false,
          kind: "server",
          status: res.status,
          message: this.#clean(`unparsable answer: ${errorText(e)}`),
        };
      }
    }
    const kind: ConsulErrorKind = res.status === 403 || res.status === 401
      ? "denied"
      : res.status >= 400 && res.status < 500 && res.status !== 429
      ? "rejected"
      : "server";
    const detail = text.trim() || res.statusText;
    return { ok: false, kind, status: res.status, message: this.#clean(`${res.status} ${detail}`) };
  }

  /** One line, bounded, with the token scrubbed in case an agent ever echoes it. */
  #clean(text: string): string {
    const line = redact(text, [this.#cfg.token]).split("\n")[0];
    return line.length > MAX_MESSAGE ? `${line.slice(0, MAX_MESSAGE)}…` : line;
  }
}
