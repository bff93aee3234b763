/**
 * Calibration figures that say what part of a measurement is not the
 * supervisor: the spawn stamp's own delay, and Deno's floor (start-up time,
 * idle CPU and memory of a module that does nothing, run with the
 * supervisor's exact flags).
 * @module
 */

import { compilePermissionFlags } from "../tests/support/permissions.ts";
import { onCleanup } from "./cleanup.ts";
import type { FloorVariant } from "./floor.ts";
import { APP_SH, lineStamp } from "./node.ts";

const FLOOR_TS = new URL("./floor.ts", import.meta.url).pathname;

/**
 * Harness spawn to the stamp `app.sh` writes, in milliseconds, `runs` times:
 * the fork, exec and bash start-up that every "app spawned" figure includes.
 */
export async function spawnStampOffsets(runs: number): Promise<number[]> {
  const dir = await Deno.makeTempDir({ prefix: "ndls-bench-cal-" });
  const file = `${dir}/stamp.jsonl`;
  const out: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const cmd = new Deno.Command("/bin/bash", {
        args: [APP_SH, "/bin/true"],
        env: { APP_STATE_FILE: file, LC_ALL: "C" },
        stdout: "null",
        stderr: "null",
      });
      const t0 = Date.now();
      const st = await cmd.spawn().status;
      if (!st.success) throw new Error(`app.sh failed with ${st.code}`);
      const lines = (await Deno.readTextFile(file)).trim().split("\n");
      out.push((JSON.parse(lines[lines.length - 1]) as { at: number }).at - t0);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return out;
}

/** A running floor module. */
export interface FloorProcess {
  variant: FloorVariant;
  pid: number;
  /** Exec to its first line, ms. */
  startMs: number;
  /** Kills it and waits for it. */
  stop(): Promise<void>;
}

/** Starts a floor module with the supervisor's flags and waits for its first line. */
export async function startFloor(variant: FloorVariant = "empty"): Promise<FloorProcess> {
  const dir = variant === "poll" ? await Deno.makeTempDir({ prefix: "ndls-bench-floor-" }) : null;
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...compilePermissionFlags(), FLOOR_TS, variant, ...(dir ? [dir] : [])],
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/root",
      NO_COLOR: "1",
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
    },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  });
  const t0 = Date.now();
  const proc = cmd.spawn();
  let forget = () => {};
  const stop = async () => {
    forget();
    try {
      proc.kill("SIGKILL");
    } catch {
      // already gone
    }
    await proc.status;
    if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  forget = onCleanup(stop);
  try {
    const stamp = lineStamp(await firstLine(proc));
    if (stamp === null) throw new Error("floor module printed no stamp");
    return { variant, pid: proc.pid, startMs: stamp - t0, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * Exec to the first line of floor module `variant`, `runs` times after one
 * discarded warm-up run (which reads the modules into the page cache).
 */
export async function denoFloorStartups(
  runs: number,
  variant: FloorVariant = "empty",
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const f = await startFloor(variant);
    await f.stop();
    if (i > 0) out.push(f.startMs);
  }
  return out;
}

/**
 * Reads the first stdout line of `proc`, then closes the pipe: the floor
 * module writes nothing else, and an open pipe nobody reads would keep the
 * harness's resources busy.
 */
async function firstLine(proc: Deno.ChildProcess): Promise<string> {
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("floor module exited before printing");
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return text.slice(0, text.indexOf("\n"));
}
