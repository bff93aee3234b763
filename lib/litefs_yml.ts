/**
 * Reads the two facts the supervisor needs from LiteFS's own config file: the
 * FUSE mount directory and the HTTP API address. Reading litefs.yml (rather
 * than asking the operator to repeat them) keeps one source of truth.
 * @module
 */

import { parse } from "yaml";

/** What the supervisor takes from litefs.yml. */
export interface LiteFsSettings {
  /** `fuse.dir`, or null when the file does not set it. */
  fuseDir: string | null;
  /** `http.addr` as written, or null when not set (LiteFS then uses `:20202`). */
  httpAddr: string | null;
  /** `lease.consul.ttl` as written (a Go duration), or null when not set (LiteFS: 10s). */
  leaseTtl: string | null;
}

/** LiteFS's default Consul lease TTL (`consul.DefaultTTL`). */
export const LITEFS_DEFAULT_LEASE_TTL = "10s";

/** LiteFS's default `http.addr` (`http/server.go` DefaultAddr). */
export const LITEFS_DEFAULT_HTTP_ADDR = ":20202";

const SPECIAL = /[*#$@!?\-0-9]/;
const ALNUM = /[A-Za-z0-9_]/;
const EXPR_SINGLE = /^(\w+)\s*(==|!=)\s*'(.*)'$/;
const EXPR_DOUBLE = /^(\w+)\s*(==|!=)\s*"(.*)"$/;
const EXPR_VAR = /^(\w+)\s*(==|!=)\s*(\w+)$/;

/**
 * Expands `$VAR`, `${VAR}` and the `${VAR == "x"}`, `${VAR != 'x'}`,
 * `${A == B}` comparisons exactly as LiteFS does (Go's `os.Expand` plus
 * LiteFS's expression forms), so we read the same values LiteFS will use.
 */
export function expandLiteFsEnv(text: string, env: (name: string) => string | undefined): string {
  const get = (n: string) => env(n) ?? "";
  const map = (raw: string): string => {
    const v = raw.trim();
    let m = EXPR_SINGLE.exec(v) ?? EXPR_DOUBLE.exec(v);
    if (m) return String(m[2] === "==" ? get(m[1]) === m[3] : get(m[1]) !== m[3]);
    m = EXPR_VAR.exec(v);
    if (m) return String(m[2] === "==" ? get(m[1]) === get(m[3]) : get(m[1]) !== get(m[3]));
    return get(v);
  };
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c !== "$" || i + 1 >= text.length) {
      out += c;
      i++;
      continue;
    }
    const rest = text.slice(i + 1);
    if (rest[0] === "{") {
      const close = rest.indexOf("}");
      if (close === -1) {
        i += 2; // Go eats an unterminated "${"
      } else if (close === 1) {
        i += 3; // and an empty "${}"
      } else {
        out += map(rest.slice(1, close));
        i += close + 2;
      }
    } else if (SPECIAL.test(rest[0])) {
      out += map(rest[0]);
      i += 2;
    } else {
      let n = 0;
      while (n < rest.length && ALNUM.test(rest[n])) n++;
      if (n === 0) {
        out += "$";
        i++;
      } else {
        out += map(rest.slice(0, n));
        i += n + 1;
      }
    }
  }
  return out;
}

/**
 * Parses litefs.yml text (after LiteFS-style env expansion). Throws an Error
 * whose message names the problem when the YAML is invalid or the two keys
 * have the wrong type.
 */
export function parseLiteFsYml(
  text: string,
  env: (name: string) => string | undefined,
): LiteFsSettings {
  const doc = parse(expandLiteFsEnv(text, env)) ?? {};
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new Error("top level is not a mapping");
  }
  const fuse = section(doc, "fuse");
  const http = section(doc, "http");
  const consul = section(section(doc, "lease"), "consul", "lease.consul");
  return {
    fuseDir: stringKey(fuse, "fuse.dir", "dir"),
    httpAddr: stringKey(http, "http.addr", "addr"),
    leaseTtl: stringKey(consul, "lease.consul.ttl", "ttl"),
  };
}

function section(
  doc: Record<string, unknown>,
  key: string,
  label = key,
): Record<string, unknown> {
  const v = doc[key];
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v)) throw new Error(`"${label}" is not a mapping`);
  return v as Record<string, unknown>;
}

function stringKey(sec: Record<string, unknown>, label: string, key: string): string | null {
  const v = sec[key];
  if (v === undefined || v === null || v === "") return null;
  if (typeof v !== "string") throw new Error(`"${label}" is not a string`);
  return v;
}

/**
 * Turns a LiteFS `http.addr` (`:20202`, `0.0.0.0:20202`, `host:port`) into the
 * URL this node reaches its own LiteFS API at. A wildcard or empty host means
 * "all interfaces", which includes loopback, so we use 127.0.0.1.
 */
export function apiUrlFromHttpAddr(addr: string): string {
  const m = /^(\[[^\]]*\]|[^:]*):(\d+)$/.exec(addr.trim());
  const bad = new Error(`"http.addr" ${JSON.stringify(addr)} is not host:port`);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw bad;
  const host = m[1] === "" || m[1] === "0.0.0.0" || m[1] === "[::]" ? "127.0.0.1" : m[1];
  const url = `http://${host}:${m[2]}`;
  try {
    new URL(url);
  } catch {
    throw bad;
  }
  return url;
}
