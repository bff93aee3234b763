/**
 * Which folders Navidrome would create inside the LiteFS mount. The mount is
 * flat (mkdir fails with EPERM) and treats every plain file as a database, so
 * only the database may live there; caches, plugins and backups must not.
 * @module
 */

/** A Navidrome folder that resolves inside the mount. */
export interface FolderOnMount {
  /** The setting responsible, e.g. `ND_CACHEFOLDER` (or `ND_DATAFOLDER` for a default). */
  setting: string;
  path: string;
  why: string;
}

function inside(path: string, mount: string): boolean {
  const m = mount.replace(/\/+$/, "");
  return path === m || path.startsWith(`${m}/`);
}

function join(a: string, b: string): string {
  return `${a.replace(/\/+$/, "")}/${b}`;
}

/**
 * Lists the folders Navidrome (v0.63) would create inside `mountDir` given
 * its `ND_*` environment: the cache (default `<data>/cache`), the plugins
 * folder (default `<data>/plugins`, created at start-up while plugins are
 * enabled, the default), the backup path and the music folder. The data folder itself may be
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
  if (pluginsOn) {
    check(
      "ND_PLUGINS_FOLDER",
      env("ND_PLUGINS_FOLDER") ?? fromData("plugins"),
      "created at start-up while plugins are enabled (set ND_PLUGINS_ENABLED=false or move it)",
    );
  }
  check("ND_BACKUP_PATH", env("ND_BACKUP_PATH"), "database backups");
  check("ND_MUSICFOLDER", env("ND_MUSICFOLDER"), "music library (read-only data, not a database)");
  return out;
}
