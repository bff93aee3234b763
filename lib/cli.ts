/**
 * The supervisor's command line: `[run|doctor] [--] <command> [args…]`.
 * LiteFS's exec block runs `navidrome-litefs-supervisor -- /app/navidrome`.
 * @module
 */

/** What the command line asked for. */
export type Invocation =
  | { kind: "run"; command: string[] }
  | { kind: "doctor"; command: string[] }
  | { kind: "help" }
  | { kind: "version" };

/** Usage text printed by `--help`. */
export const USAGE = `Usage:
  navidrome-litefs-supervisor [run] -- <navidrome> [args…]   supervise Navidrome on the LiteFS primary
  navidrome-litefs-supervisor doctor [-- <navidrome> …]       check settings, Consul and LiteFS, then exit
  navidrome-litefs-supervisor --version | --help

Settings come from NDLS_* variables, Consul's client variables (CONSUL_HTTP_ADDR,
CONSUL_HTTP_TOKEN[_FILE], CONSUL_HTTP_SSL, CONSUL_CACERT) and litefs.yml (NDLS_LITEFS_CONFIG,
default /etc/litefs.yml): see the README's Configuration section. Exit codes: 0 stopped by a
signal, 1 internal error, 75 Navidrome kept crashing, 78 bad configuration, 130 second signal.`;

/** Raised for a malformed command line; the message is one line. */
export class UsageError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parses the supervisor's arguments (without the program name). */
export function parseArgs(args: readonly string[]): Invocation {
  const dash = args.indexOf("--");
  const own = dash === -1 ? [...args] : args.slice(0, dash);
  const command = dash === -1 ? [] : args.slice(dash + 1);
  if (own.includes("--help") || own.includes("-h")) return { kind: "help" };
  if (own.includes("--version")) return { kind: "version" };
  let kind: "run" | "doctor" = "run";
  if (own[0] === "run" || own[0] === "doctor") kind = own.shift() as "run" | "doctor";
  if (own.length > 0) {
    throw new UsageError(
      `unexpected argument ${JSON.stringify(own[0])}: put Navidrome's command after "--"`,
    );
  }
  if (kind === "run" && command.length === 0) {
    throw new UsageError(`no command to supervise: pass it after "--", e.g. -- /app/navidrome`);
  }
  return { kind, command };
}

/**
 * Resolves a command's executable the way execvp would (a name with a slash
 * is used as is, otherwise each PATH entry is tried), so a typo in litefs.yml
 * is a configuration error at start-up instead of a crash loop later.
 * Returns the resolved path or throws {@link UsageError}.
 */
export function resolveExecutable(
  name: string,
  path: string | undefined,
  isExecutable: (p: string) => boolean,
): string {
  if (name.includes("/")) {
    if (!isExecutable(name)) {
      throw new UsageError(`command ${JSON.stringify(name)} is not an executable file`);
    }
    return name;
  }
  for (const dir of (path ?? "").split(":")) {
    if (dir === "") continue;
    const candidate = `${dir.replace(/\/+$/, "")}/${name}`;
    if (isExecutable(candidate)) return candidate;
  }
  throw new UsageError(`command ${JSON.stringify(name)} not found on PATH`);
}

/** True when `p` is a regular file with an execute bit (uid checks are left to exec). */
export function isExecutableFile(p: string): boolean {
  try {
    const st = Deno.statSync(p);
    return st.isFile && st.mode !== null && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}
