/**
 * What the kernel knows about a process's cost: CPU time from
 * `/proc/<pid>/stat` and peak memory from `/proc/<pid>/status`. Read from
 * outside, so measuring a supervisor never changes what it does.
 * @module
 */

/** CPU time of one process, in seconds. */
export interface CpuTimes {
  /** utime + stime: the process itself, all its threads. */
  self: number;
  /** cutime + cstime: children it has waited for (a shell loop's `sleep` and `curl`). */
  reapedChildren: number;
}

/**
 * Clock ticks per second of the `/proc/<pid>/stat` times. `getconf` asks
 * sysconf(_SC_CLK_TCK); Linux has used 100 on every mainstream architecture
 * for decades, so that is the fallback.
 */
export async function clockTicksPerSecond(): Promise<number> {
  try {
    const out = await new Deno.Command("getconf", { args: ["CLK_TCK"], stderr: "null" }).output();
    const n = Number(new TextDecoder().decode(out.stdout).trim());
    if (out.success && Number.isInteger(n) && n > 0) return n;
  } catch {
    // getconf missing: fall through
  }
  return 100;
}

/**
 * Reads utime, stime, cutime and cstime (fields 14–17 of `/proc/<pid>/stat`).
 * The fields are counted from the last `)`, because the command name inside
 * the parentheses may itself contain spaces or parentheses.
 */
export function readCpuTimes(pid: number, ticksPerSecond: number): CpuTimes {
  const text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // After ") " come field 3 (state) onwards, so field n is at index n - 3.
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ").map(Number);
  const [utime, stime, cutime, cstime] = [f[14 - 3], f[15 - 3], f[16 - 3], f[17 - 3]];
  return {
    self: (utime + stime) / ticksPerSecond,
    reapedChildren: (cutime + cstime) / ticksPerSecond,
  };
}

/** Peak and current resident set size of one process, in MiB. */
export interface Memory {
  /** VmHWM: the high-water mark of the resident set since the process started. */
  peakMiB: number;
  /** VmRSS: the resident set now. */
  currentMiB: number;
  /** RssFile: the part of it that is file-backed (the executable's own pages, shared, reclaimable). */
  fileMiB: number;
}

/** Reads VmHWM, VmRSS and RssFile from `/proc/<pid>/status`. */
export function readMemory(pid: number): Memory {
  const text = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text);
    if (!m) throw new Error(`/proc/${pid}/status has no ${key}`);
    return Number(m[1]);
  };
  return {
    peakMiB: kib("VmHWM") / 1024,
    currentMiB: kib("VmRSS") / 1024,
    fileMiB: kib("RssFile") / 1024,
  };
}

/** True while `/proc/<pid>` exists: running, or exited but not yet reaped by its parent. */
export function procExists(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** The machine's CPU model as `/proc/cpuinfo` names it, and how many CPUs are online. */
export function cpuModel(): { model: string; cpus: number } {
  let text = "";
  try {
    text = Deno.readTextFileSync("/proc/cpuinfo");
  } catch {
    return { model: "unknown", cpus: navigator.hardwareConcurrency };
  }
  const m = /^model name\s*:\s*(.+)$/m.exec(text);
  const cpus = text.split("\n").filter((l) => /^processor\s*:/.test(l)).length;
  return { model: m ? m[1].trim() : "unknown", cpus: cpus || navigator.hardwareConcurrency };
}
