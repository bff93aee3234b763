/**
 * Turns what the LiteFS API and the `.primary` file say into one role. Pure:
 * the rules that decide "may Navidrome run here" live in one readable place.
 * @module
 */

import type { LeadershipMode } from "./config.ts";

/** The role of this node as the supervisor understands it. */
export type RoleKind = "primary" | "replica" | "unknown";

/** A role plus the primary's hostname (replicas only, when known) and why. */
export interface Role {
  kind: RoleKind;
  /** The primary's LiteFS hostname, when this node is a replica and knows it. */
  primary: string | null;
  /** Human-readable cause, logged on every transition and shown by /status. */
  reason: string;
}

/** What the LiteFS HTTP API last told us. */
export interface ApiView {
  /** The event stream is connected, or the last `/info` call succeeded. */
  reachable: boolean;
  /**
   * The event stream is open but `/info` keeps failing: LiteFS's HTTP side
   * is wedged. Not reachable, and not "unreachable" either, so file mode may
   * not promote on an absent `.primary` (LiteFS is there, and says nothing).
   */
  wedged: boolean;
  /** `isPrimary` from the newest event or `/info`; null before the first answer. */
  isPrimary: boolean | null;
  /** The primary's hostname from the newest event or `/info`, when given. */
  primaryHostname: string | null;
  /** Why the API is unreachable (last error), for the role's reason. */
  detail: string;
}

/** What the last stat of `<mount>/.primary` found. */
export type FileView =
  | { state: "present"; hostname: string }
  | { state: "absent" }
  | { state: "error"; detail: string }
  | { state: "unread" };

/**
 * Decides the role:
 * - `.primary` present is a reliable "replica" whatever else is said (LiteFS
 *   writes it only on a replica connected to a primary).
 * - Otherwise a reachable API decides. `isPrimary:true` also needs the mount
 *   readable, since Navidrome cannot work on a broken mount anyway.
 * - An unreachable (or disabled) API makes the role unknown, because an absent
 *   file cannot tell a primary from a replica that lost its primary — unless
 *   the operator chose `file` mode, where the absent file decides.
 */
export function deriveRole(api: ApiView | null, file: FileView, mode: LeadershipMode): Role {
  if (file.state === "present") {
    return { kind: "replica", primary: file.hostname, reason: `.primary names ${file.hostname}` };
  }
  if (api?.reachable && api.isPrimary !== null) {
    if (!api.isPrimary) {
      const who = api.primaryHostname;
      return {
        kind: "replica",
        primary: who,
        reason: who ? `LiteFS API: primary is ${who}` : "LiteFS API: not primary, no primary known",
      };
    }
    if (file.state === "absent") {
      return { kind: "primary", primary: null, reason: "LiteFS API: this node is primary" };
    }
    const why = file.state === "error" ? file.detail : "not read yet";
    return { kind: "unknown", primary: null, reason: `LiteFS API says primary but mount: ${why}` };
  }
  const apiWhy = api === null
    ? "LiteFS API off"
    : api.reachable
    ? "LiteFS API has not answered yet"
    : `LiteFS API ${api.wedged ? "not answering" : "unreachable"} (${api.detail})`;
  if (mode === "file" && !api?.wedged) {
    if (file.state === "absent") {
      return { kind: "primary", primary: null, reason: `${apiWhy}; .primary absent (file mode)` };
    }
  }
  const fileWhy = file.state === "error"
    ? `mount: ${file.detail}`
    : file.state === "unread"
    ? ".primary not read yet"
    : ".primary absent proves nothing";
  return { kind: "unknown", primary: null, reason: `${apiWhy}; ${fileWhy}` };
}
