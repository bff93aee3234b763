/**
 * Which folders Navidrome would create inside the LiteFS mount. The mount is
 * flat (mkdir fails with EPERM) and treats every plain file as a database, so
 * only the database may live there; caches, plugins and backups must not.
 * @module
 */

import { posix } from "node:path";

/** A Navidrome folder that resolves inside the mount. */
export interface FolderOnMount {
  /** The setting responsible, e.g. `ND_CACHEFOLDER` (or `ND_DATAFOLDER` for a default). */
  setting: string;
  path: string;
  why: string;
}

/**
 * True when absolute `path` lies in `mount`. Both are normalised first, so
 * `/srv/../data/cache` or `/data//cache` are caught like `/data/cache`.
 */
function inside(path: string, mount: string): boolean {
  const m = posix.normalize(mount).replace(/\/+$/, "");
  const p = posix.normalize(path).replace(/\/+$/, "");
  return p === m || p.startsWith(`${m}/`);
}

function join(a: string, b: string): string {
  return `${a.replace(/\/+$/, "")}/${b}`;
}

/**
 * Lists the folders Navidrome (v0.63) would create inside `mountDir` given
 * its `ND_*` environment: the cache (default `<data>/cache`), plugin folders
 * (under the data folder whenever plugins are enabled, the default), the
 * backup path, the music folder and the log file. Uploaded images always go
 * to `<data>/artwork`, which no setting moves: see {@link artworkOnMount}. The data folder itself may be
 * the mount: that is where navidrome.db belongs.
 */
export function navidromeFoldersOnMount(
  env: (name: string) => string | undefined,
  mountDir: string,
): FolderOnMount[] {
  const out: FolderOnMount[] = [];
  const data = env("ND_DATAFOLDER");
  const check = (setting: string, path: string | undefined, why: string) => {
    if (path && path.startsWith("/") && inside(path, mountDir)) out.push({ setting, path, why });
  };
  const fromData = (name: string) => (data ? join(data, name) : undefined);

  check(
    "ND_CACHEFOLDER",
    env("ND_CACHEFOLDER") ?? fromData("cache"),
    "transcoding and image cache",
  );
  const pluginsOn = (env("ND_PLUGINS_ENABLED") ?? "true").toLowerCase() !== "false";
  if (pluginsOn && data) {
    // Even with ND_PLUGINS_FOLDER moved, plugins using the KV store or task
    // queue create <DataFolder>/plugins/<name> later (navidrome plugins/host_*.go).
    check(
      "ND_PLUGINS_ENABLED",
      env("ND_PLUGINS_FOLDER") ?? fromData("plugins"),
      "plugins create folders under the data folder at start-up and at run time; set ND_PLUGINS_ENABLED=false",
    );
    if (env("ND_PLUGINS_FOLDER") !== undefined) {
      check("ND_PLUGINS_ENABLED", fromData("plugins"), "plugin KV store and task queue folders");
    }
  }
  check("ND_BACKUP_PATH", env("ND_BACKUP_PATH"), "database backups");
  check("ND_MUSICFOLDER", env("ND_MUSICFOLDER"), "music library (read-only data, not a database)");
  const logFile = env("ND_LOGFILE");
  check("ND_LOGFILE", logFile, "log file (and its parent folder)");
  return out;
}

/**
 * Navidrome stores uploaded artist, playlist and radio images under
 * `<DataFolder>/artwork`, and no setting moves it: with the data folder on
 * the mount, image uploads fail (EPERM). Returns that path, or null.
 */
export function artworkOnMount(
  env: (name: string) => string | undefined,
  mountDir: string,
): string | null {
  const data = env("ND_DATAFOLDER");
  if (!data || !data.startsWith("/")) return null;
  const path = join(data, "artwork");
  return inside(path, mountDir) ? path : null;
}
