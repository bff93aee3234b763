/**
 * A real LiteFS cluster on one machine. Every node is its own host: its own
 * network namespace (a veth on a private bridge) and its own mount namespace,
 * whose root is the image the Dockerfile describes (see node_boot.sh), started
 * with the environment job.nomad gives the task. The real LiteFS and
 * Navidrome binaries run there, and the supervisor runs from source with
 * exactly the permission flags `deno task compile` bakes in.
 *
 * Consul is one {@link ConsulDouble} in the test process, listening on the
 * bridge's address in the root namespace. It stands in for every node's local
 * agent and for the servers at once: each node registers its own service ID,
 * so nothing collides, and LiteFS's sessions and lease key are server state in
 * real Consul anyway. job.nomad reaches "the node's agent" through
 * `${attr.unique.network.ip-address}`, so that attribute is the bridge address
 * here, while the allocation's port addresses are each node's own.
 *
 * Everything created carries the prefix {@link PREFIX}; {@link sweepLeftovers}
 * removes whatever a killed earlier run left behind.
 * @module
 */

import { ConsulDouble } from "../support/consul_double.ts";
import {
  containerEnv,
  copies,
  copyTargets,
  createdDirs,
  entrypoint,
  type JobSpec,
  readDockerfile,
  readJob,
  repoPath,
  workdir,
} from "../support/deployment.ts";
import { compilePermissionFlags } from "../support/permissions.ts";
import { waitFor } from "../support/wait.ts";

/** Prefix of every namespace, link, directory and mount the end-to-end tests create. */
export const PREFIX = "ndlse2e";
const BRIDGE = `${PREFIX}0`;
/** A private /24 that exists only on our bridge; the nodes have no other route. */
const SUBNET = "10.77.0";
/** The bridge's address in the root namespace, where the Consul double listens. */
export const BRIDGE_IP = `${SUBNET}.1`;
/** Guards against two runs sweeping each other's cluster. */
const LOCK_FILE = `/run/${PREFIX}.pid`;
const BOOT_SCRIPT = repoPath("tests/e2e/node_boot.sh");
/** The PATH of the runtime image's Debian base. */
const IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** job.nomad volumes that are node-local (LiteFS's data dir); all others are shared storage. */
const NODE_LOCAL_VOLUMES = new Set(["navidrome-litefs"]);

/** Runs a command, returns its stdout; throws with stderr when it fails. */
export async function sh(cmd: string[], opts: { allowFail?: boolean } = {}): Promise<string> {
  const out = await new Deno.Command(cmd[0], { args: cmd.slice(1), stdin: "null" }).output();
  const text = new TextDecoder();
  if (!out.success && !opts.allowFail) {
    throw new Error(`${cmd.join(" ")} failed (${out.code}): ${text.decode(out.stderr).trim()}`);
  }
  return text.decode(out.stdout);
}

/** The cached real binaries, from tests/e2e/install_deps.sh. */
export interface Binaries {
  litefs: string;
  navidrome: string;
}

/**
 * `LITEFS` and `NAVIDROME` from the environment when both are set, else what
 * install_deps.sh prints (it builds or reuses the cached binaries).
 */
export async function binaries(): Promise<Binaries> {
  let vars: Record<string, string | undefined> = {
    LITEFS: Deno.env.get("LITEFS"),
    NAVIDROME: Deno.env.get("NAVIDROME"),
  };
  if (!vars.LITEFS || !vars.NAVIDROME) {
    const out = await sh([repoPath("tests/e2e/install_deps.sh")]);
    vars = Object.fromEntries(
      out.trim().split("\n").map((line) => {
        const m = /^(\w+)=([\w/.+,:@%=-]+)$/.exec(line);
        if (!m) throw new Error(`install_deps.sh printed an unexpected line: ${line}`);
        return [m[1], m[2]];
      }),
    );
  }
  const { LITEFS: litefs, NAVIDROME: navidrome } = vars;
  if (!litefs || !navidrome) throw new Error("install_deps.sh did not name both binaries");
  return { litefs, navidrome };
}

/**
 * Fails loudly unless this machine can run the cluster: root, /dev/fuse,
 * network namespaces, mount namespaces with overlay and FUSE. Never skips.
 */
export async function preflight(): Promise<void> {
  if (Deno.uid() !== 0) throw new Error("the end-to-end tests need root (namespaces, FUSE)");
  const fuse = await Deno.stat("/dev/fuse").catch(() => null);
  if (!fuse?.isCharDevice) throw new Error("/dev/fuse is missing: LiteFS cannot mount");
  for (const tool of ["ip", "unshare", "fusermount3", "ss", "chroot"]) {
    await sh(["sh", "-c", `command -v ${tool}`]).catch(() => {
      throw new Error(`${tool} is not installed (run tests/e2e/install_deps.sh)`);
    });
  }
  const ns = `${PREFIX}-probe`;
  await sh(["ip", "netns", "add", ns]);
  try {
    await sh([
      "ip",
      "netns",
      "exec",
      ns,
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      "mount -t tmpfs none /mnt && mkdir /mnt/l /mnt/u /mnt/w /mnt/o && " +
      "mount -t overlay none -o lowerdir=/mnt/l,upperdir=/mnt/u,workdir=/mnt/w /mnt/o",
    ]);
  } finally {
    await sh(["ip", "netns", "del", ns], { allowFail: true });
  }
}

/** Pids of every process in a network namespace. */
async function netnsPids(ns: string): Promise<number[]> {
  const out = await sh(["ip", "netns", "pids", ns], { allowFail: true });
  return out.split("\n").filter((l) => /^\d+$/.test(l.trim())).map(Number);
}

/** SIGKILLs every process in a network namespace and waits until none is left. */
async function killNetns(ns: string): Promise<void> {
  await waitFor(async () => {
    const pids = await netnsPids(ns);
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
    return pids.length === 0;
  }, { timeoutMs: 10_000, intervalMs: 50, what: `no process left in ${ns}` });
}

/**
 * Removes every namespace, link, run directory and lock a previous run with
 * our prefix left behind (its processes first, so their mounts go with them).
 * Returns what it removed.
 */
export async function sweepLeftovers(): Promise<string[]> {
  const removed: string[] = [];
  const list = await sh(["ip", "netns", "list"], { allowFail: true });
  for (const ns of list.split("\n").map((l) => l.split(" ")[0]).filter(Boolean)) {
    if (!ns.startsWith(PREFIX)) continue;
    await killNetns(ns);
    await sh(["ip", "netns", "del", ns], { allowFail: true });
    removed.push(`netns ${ns}`);
  }
  const links = await sh(["ip", "-o", "link", "show"]);
  for (const m of links.matchAll(/^\d+: ([^:@\s]+)/gm)) {
    if (!m[1].startsWith(PREFIX)) continue;
    await sh(["ip", "link", "del", m[1]], { allowFail: true });
    removed.push(`link ${m[1]}`);
  }
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  for await (const entry of Deno.readDir(tmp)) {
    if (!entry.isDirectory || !entry.name.startsWith(`${PREFIX}-`)) continue;
    await Deno.remove(`${tmp}/${entry.name}`, { recursive: true });
    removed.push(`dir ${tmp}/${entry.name}`);
  }
  return removed;
}

/** Takes the machine-wide run lock, sweeping a dead run's leftovers; throws if a run is alive. */
async function takeLock(): Promise<void> {
  const holder = Number(await Deno.readTextFile(LOCK_FILE).catch(() => "0"));
  if (holder > 0 && holder !== Deno.pid && (await Deno.stat(`/proc/${holder}`).catch(() => null))) {
    throw new Error(`another end-to-end run (pid ${holder}) is using ${SUBNET}.0/24`);
  }
  await Deno.writeTextFile(LOCK_FILE, String(Deno.pid));
  const removed = await sweepLeftovers();
  if (removed.length > 0) console.log(`swept leftovers of an earlier run: ${removed.join(", ")}`);
  const routes = await sh(["ip", "-4", "route", "show", "to", "match", BRIDGE_IP]);
  if (routes.split("\n").some((r) => r.trim() !== "" && !r.startsWith("default"))) {
    throw new Error(`${SUBNET}.0/24 is already routed on this machine:\n${routes}`);
  }
}

/** `GET /info` of a LiteFS node, as far as the tests use it. */
export interface LiteFsInfo {
  isPrimary: boolean;
  primary: string | null;
}

/** One cluster node: a network namespace, and the container booted in it (when running). */
export class Node {
  /** Node name: Nomad's node.unique.name, LiteFS's lease hostname. */
  readonly name: string;
  /** Its address on the bridge. */
  readonly ip: string;
  readonly netns: string;
  /** Root-side end of its veth. */
  readonly veth: string;
  readonly dir: string;
  /** The environment the container is started with. */
  readonly env: Record<string, string>;
  #cluster: Cluster;
  #proc: Deno.ChildProcess | null = null;
  #status: Deno.CommandStatus | null = null;
  #boots = 0;
  #lines: string[] = [];
  #pumps: Promise<void>[] = [];

  constructor(cluster: Cluster, index: number, env: Record<string, string>) {
    this.#cluster = cluster;
    this.name = `node${index}`;
    this.ip = `${SUBNET}.${10 + index}`;
    this.netns = `${PREFIX}-n${index}`;
    this.veth = `${PREFIX}-v${index}`;
    this.dir = `${cluster.dir}/${this.name}`;
    this.env = env;
  }

  /** Pid of the running container's entrypoint (LiteFS), or null. */
  get pid(): number | null {
    return this.#proc && !this.#status ? this.#proc.pid : null;
  }

  /** Exit status of the last boot, once it has ended. */
  get status(): Deno.CommandStatus | null {
    return this.#status;
  }

  /** LiteFS's advertise URL, which is also where its API answers. */
  get apiUrl(): string {
    return this.env.LITEFS_ADVERTISE_URL;
  }

  async createNetwork(): Promise<void> {
    await sh(["ip", "netns", "add", this.netns]);
    await sh([
      "ip",
      "link",
      "add",
      this.veth,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      this.netns,
    ]);
    await sh(["ip", "link", "set", this.veth, "master", BRIDGE, "up"]);
    await sh(["ip", "-n", this.netns, "addr", "add", `${this.ip}/24`, "dev", "eth0"]);
    await sh(["ip", "-n", this.netns, "link", "set", "eth0", "up"]);
    await sh(["ip", "-n", this.netns, "link", "set", "lo", "up"]);
  }

  /** Starts the container: LiteFS as the entrypoint, in fresh mount and UTS namespaces. */
  async boot(): Promise<void> {
    if (this.pid !== null) throw new Error(`${this.name} is already running`);
    this.#boots++;
    const scratch = `${this.dir}/boot`;
    await Deno.mkdir(scratch, { recursive: true });
    const manifest = `${this.dir}/manifest.tsv`;
    await Deno.writeTextFile(manifest, this.#cluster.manifestFor(this));
    const image = this.#cluster.image;
    this.log(`boot #${this.#boots}: ${image.entrypoint.join(" ")}`);
    this.#status = null;
    const proc = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        this.netns,
        "unshare",
        "--mount",
        "--uts",
        "--propagation",
        "private",
        "--",
        "bash",
        BOOT_SCRIPT,
        manifest,
        scratch,
        this.name,
        image.workdir,
        ...image.entrypoint,
      ],
      env: this.env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      // LiteFS leads its own process group, as under the container's init.
      detached: true,
    }).spawn();
    this.#proc = proc;
    this.#pumps = [proc.stdout, proc.stderr].map((s) => this.#pump(s));
    proc.status.then((s) => {
      this.#status = s;
      this.log(`exited: ${s.signal ? `signal ${s.signal}` : `code ${s.code}`}`);
    });
  }

  async #pump(stream: ReadableStream<Uint8Array<ArrayBuffer>>): Promise<void> {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop() ?? "";
      for (const line of parts) this.log(line);
    }
    if (rest) this.log(rest);
  }

  /** Appends a line to this node's log, stamped with seconds since the cluster started. */
  log(line: string): void {
    const stamped = `${this.#cluster.elapsed()} ${line}`;
    this.#lines.push(stamped);
    Deno.writeTextFileSync(`${this.dir}.log`, stamped + "\n", { append: true });
  }

  /** The log lines of this node so far. */
  get lines(): readonly string[] {
    return this.#lines;
  }

  /** The last lines of the node's log, for failure messages. */
  tail(n = 25): string {
    return this.#lines.slice(-n).map((l) => `  [${this.name}] ${l}`).join("\n");
  }

  /** Sends a signal to LiteFS (the container's main process). */
  signal(sig: Deno.Signal): void {
    if (this.pid === null) throw new Error(`${this.name} is not running`);
    Deno.kill(this.pid, sig);
  }

  /** Waits for the container to exit; returns its status. */
  async exited(timeoutMs: number): Promise<Deno.CommandStatus> {
    const status = await waitFor(() => this.#status, {
      timeoutMs,
      intervalMs: 20,
      what: `${this.name} to exit\n${this.tail()}`,
    });
    await Promise.allSettled(this.#pumps);
    return status;
  }

  /** SIGKILLs every process of the node at once, as a host crash would. */
  async crash(): Promise<void> {
    await killNetns(this.netns);
    await this.exited(10_000);
  }

  /** Takes the node's link down: nothing gets in or out, and nobody is told. */
  async cutLink(): Promise<void> {
    await sh(["ip", "link", "set", this.veth, "down"]);
  }

  /** Brings the node's link back. */
  async healLink(): Promise<void> {
    await sh(["ip", "link", "set", this.veth, "up"]);
  }

  /**
   * Cuts this node off from `other` only (both ways) while both still reach
   * Consul: routes to each other become unreachable, and established
   * connections between them are destroyed, as a partition that the peers
   * notice would.
   */
  async partitionFrom(other: Node): Promise<void> {
    for (const [a, b] of [[this, other], [other, this]]) {
      await sh(["ip", "-n", a.netns, "route", "add", "unreachable", `${b.ip}/32`]);
      await sh(["ip", "netns", "exec", a.netns, "ss", "-K", "dst", b.ip]);
    }
  }

  /** Undoes {@link partitionFrom}. */
  async healPartition(other: Node): Promise<void> {
    for (const [a, b] of [[this, other], [other, this]]) {
      await sh(["ip", "-n", a.netns, "route", "del", "unreachable", `${b.ip}/32`]);
    }
  }

  /** LiteFS's `/info`, or null when it does not answer within `timeoutMs`. */
  async info(timeoutMs = 500): Promise<LiteFsInfo | null> {
    try {
      const res = await fetch(`${this.apiUrl}/info`, { signal: AbortSignal.timeout(timeoutMs) });
      const body = await res.json();
      return { isPrimary: body.isPrimary === true, primary: body.primary?.hostname ?? null };
    } catch {
      return null;
    }
  }

  /**
   * Reads a file as the node sees it (through LiteFS's mount namespace and
   * root); null when it does not exist or the node is down.
   */
  async readFile(path: string, timeoutMs = 500): Promise<Uint8Array | null> {
    const pid = this.pid;
    if (pid === null) return null;
    return await withTimeout(Deno.readFile(`/proc/${pid}/root${path}`), timeoutMs, null);
  }
}

/** `promise`'s value, or `fallback` when it fails or takes longer than `ms`. */
export async function withTimeout<T, F>(
  promise: Promise<T>,
  ms: number,
  fallback: F,
): Promise<T | F> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<F>((resolve) => timer = setTimeout(() => resolve(fallback), ms));
  try {
    return await Promise.race([promise.catch(() => fallback), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** What the image provides, read from the Dockerfile's runtime stage. */
interface ImageSpec {
  workdir: string;
  entrypoint: string[];
  /** `dir <path>` and `bind <host> <path>` lines shared by every node. */
  manifest: string[];
}

/** Options of {@link Cluster.start}. */
export interface ClusterOptions {
  nodes: number;
  /** Boot the nodes right away (default true). */
  boot?: boolean;
}

/** The whole cluster: bridge, Consul double and nodes. */
export class Cluster {
  readonly dir: string;
  readonly consul: ConsulDouble;
  readonly nodes: Node[] = [];
  readonly image: ImageSpec;
  readonly job: JobSpec;
  /** Epoch milliseconds when the cluster was set up. */
  readonly startedAt = Date.now();

  private constructor(dir: string, consul: ConsulDouble, image: ImageSpec, job: JobSpec) {
    this.dir = dir;
    this.consul = consul;
    this.image = image;
    this.job = job;
  }

  /** Sets up bridge, Consul double and node namespaces; boots the nodes unless told not to. */
  static async start(opts: ClusterOptions): Promise<Cluster> {
    await takeLock();
    const bins = await binaries();
    const job = await readJob();
    const dir = await Deno.makeTempDir({ prefix: `${PREFIX}-` });
    let consul: ConsulDouble | null = null;
    const cluster = await (async () => {
      await sh(["ip", "link", "add", BRIDGE, "type", "bridge"]);
      await sh(["ip", "addr", "add", `${BRIDGE_IP}/24`, "dev", BRIDGE]);
      await sh(["ip", "link", "set", BRIDGE, "up"]);
      const denoDir = await moduleCache();
      const probeEnv = nodeEnv(job, 0, denoDir);
      const consulPort = Number(new URL(probeEnv.CONSUL_HTTP_ADDR).port);
      consul = await ConsulDouble.start({ hostname: BRIDGE_IP, port: consulPort });
      const image = await imageSpec(dir, bins, denoDir);
      const c = new Cluster(dir, consul, image, job);
      for (let i = 1; i <= opts.nodes; i++) {
        const node = new Node(c, i, nodeEnv(job, i, denoDir));
        c.nodes.push(node);
        await Deno.mkdir(`${node.dir}/volumes/navidrome-litefs`, { recursive: true });
        await node.createNetwork();
      }
      return c;
    })().catch(async (e) => {
      await (consul as ConsulDouble | null)?.stop();
      await sweepLeftovers();
      throw e;
    });
    if (opts.boot !== false) { for (const n of cluster.nodes) await n.boot(); }
    return cluster;
  }

  /** Seconds since set-up, as `+12.345s`, for log lines. */
  elapsed(): string {
    return `+${((Date.now() - this.startedAt) / 1000).toFixed(3)}s`;
  }

  /** The node of a name. */
  node(name: string): Node {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  /** The Consul KV key LiteFS leases. */
  get leaseKey(): string {
    return this.job.env.LITEFS_CONSUL_KEY;
  }

  /** The hostname in the lease key's value, or null while nobody holds it. */
  leaseHolder(): string | null {
    const entry = this.consul.kv(this.leaseKey);
    if (!entry?.Session || !entry.Value) return null;
    return JSON.parse(atob(entry.Value)).hostname ?? null;
  }

  /** The manifest node_boot.sh applies for a node: the image's files plus its volumes. */
  manifestFor(node: Node): string {
    const lines = [...this.image.manifest];
    for (const m of this.job.mounts) {
      const volume = this.job.volumes[String(m.volume)];
      const source = String(volume.source);
      const host = NODE_LOCAL_VOLUMES.has(source)
        ? `${node.dir}/volumes/${source}`
        : `${this.dir}/shared-volumes/${source}`;
      Deno.mkdirSync(host, { recursive: true });
      const ro = m.read_only === true || volume.read_only === true;
      lines.push(`${ro ? "ro" : "bind"}\t${host}\t${m.destination}`);
    }
    return lines.join("\n") + "\n";
  }

  /** Stops everything: nodes (their processes and mounts go with them), double, bridge, files. */
  async destroy(): Promise<void> {
    for (const n of this.nodes) await killNetns(n.netns);
    await this.consul.stop();
    await sweepLeftovers();
    await Deno.remove(LOCK_FILE).catch(() => {});
  }
}

/** The environment of node `index` (0 = a stand-in used only to read the agent's address). */
function nodeEnv(job: JobSpec, index: number, denoDir: string): Record<string, string> {
  const hostPorts = Object.fromEntries(
    Object.entries(job.ports).map(([label, p]) => [label, Number(p.to)]),
  );
  const env: Record<string, string> = {
    // What Docker and the Debian base image give every container.
    PATH: IMAGE_PATH,
    HOME: "/root",
    HOSTNAME: `node${index}`,
    ...containerEnv(job, {
      nodeName: `node${index}`,
      nodeIp: BRIDGE_IP,
      // No port mapping: the node's namespace is its own address space.
      hostIp: `${SUBNET}.${10 + index}`,
      hostPorts,
    }),
    // The stand-in for the compiled supervisor runs from source: it needs the module cache.
    DENO_DIR: denoDir,
  };
  return env;
}

/**
 * Fills Deno's module cache with the supervisor's dependencies (the nodes
 * cannot reach a registry) and returns the cache's directory.
 */
async function moduleCache(): Promise<string> {
  await sh([Deno.execPath(), "cache", "--quiet", repoPath("main.ts")]);
  const info = JSON.parse(await sh([Deno.execPath(), "info", "--json"]));
  if (typeof info.denoDir !== "string") throw new Error("deno info names no denoDir");
  return info.denoDir;
}

/**
 * Reads the Dockerfile's runtime stage and says how each of its files is
 * provided here: repository files as they are, LiteFS and Navidrome from the
 * cached builds, and the compiled supervisor by a wrapper that runs main.ts
 * with exactly the compile task's permission flags.
 */
async function imageSpec(dir: string, bins: Binaries, denoDir: string): Promise<ImageSpec> {
  const docker = await readDockerfile();
  const builder = docker.stages.find((s) => s.image === "denoland/deno")?.name;
  const wrapper = `${dir}/navidrome-litefs-supervisor`;
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const command = [Deno.execPath(), "run", ...compilePermissionFlags(), repoPath("main.ts")];
  // exec, so LiteFS's signals reach the supervisor itself.
  await Deno.writeTextFile(
    wrapper,
    `#!/bin/sh\n# Generated by tests/e2e/cluster.ts: the compiled supervisor, from source.\n` +
      `exec ${command.map(quote).join(" ")} "$@"\n`,
    { mode: 0o755 },
  );
  const manifest = createdDirs(docker.final).map((d) => `dir\t${d}`);
  for (const c of copies(docker.final)) {
    for (const { source, target } of copyTargets(c)) {
      const host = c.from === undefined
        ? repoPath(source)
        : c.from === builder
        ? wrapper
        : c.from.startsWith("flyio/litefs:")
        ? bins.litefs
        : c.from === "navidrome"
        ? bins.navidrome
        : null;
      if (host === null) throw new Error(`the e2e cluster cannot provide COPY --from=${c.from}`);
      manifest.push(`ro\t${host}\t${target}`);
    }
  }
  // The wrapper's own needs must be visible inside the node's root, which
  // holds only the host's root file system: bring in any that live elsewhere.
  const rootDev = (await Deno.stat("/")).dev;
  for (const path of [Deno.execPath(), repoPath(""), denoDir]) {
    if ((await Deno.stat(path)).dev !== rootDev) manifest.push(`ro\t${path}\t${path}`);
  }
  return { workdir: workdir(docker.final), entrypoint: entrypoint(docker.final), manifest };
}
