/**
 * The repository's deployment files read the way Nomad and Docker read them:
 * job.nomad through HashiCorp's HCL parser (`@cdktf/hcl2json`), with Nomad's
 * run-time interpolation played by {@link containerEnv}, and the Dockerfile's
 * runtime stage through `dockerfile-ast`. The deploy tests check these files
 * with it, and the end-to-end cluster builds each node from it, so both look
 * at the same reading of the same files.
 * @module
 */

import { parse as parseHcl } from "@cdktf/hcl2json";
import { Copy, DockerfileParser, type Instruction } from "dockerfile-ast";

/** One HCL block as hcl2json renders it. */
export type Block = Record<string, unknown>;

const ROOT = new URL("../../", import.meta.url);

/** Absolute path of a file in the repository. */
export function repoPath(relative: string): string {
  return new URL(relative, ROOT).pathname;
}

/** The one block in an unlabelled block list (`network { … }`). */
export function single(value: unknown, what: string): Block {
  if (!Array.isArray(value) || value.length !== 1) {
    throw new Error(`expected exactly one ${what} block`);
  }
  return value[0] as Block;
}

/** The body of the one labelled block of a kind (`job "x" { … }`). */
function labelled(value: unknown, what: string): Block {
  const entries = Object.values((value ?? {}) as Record<string, unknown>);
  if (entries.length !== 1) throw new Error(`expected exactly one ${what} block`);
  return single(entries[0], what);
}

/** Every block of a possibly absent, unlabelled list (`volume_mount`, `constraint`). */
export function all(value: unknown): Block[] {
  return Array.isArray(value) ? (value as Block[]) : [];
}

/** Every labelled block of a kind, by label (`volume "x"`, `port "y"`). */
function byLabel(value: unknown, what: string): Record<string, Block> {
  const out: Record<string, Block> = {};
  for (const [label, blocks] of Object.entries((value ?? {}) as Record<string, unknown>)) {
    out[label] = single(blocks, `${what} "${label}"`);
  }
  return out;
}

/** The parts of job.nomad the tests look at. */
export interface JobSpec {
  job: Block;
  group: Block;
  task: Block;
  /** The docker driver's `config` block. */
  config: Block;
  /** The task's `env` block, uninterpolated. */
  env: Record<string, string>;
  /** Port blocks of the group's network, by label. */
  ports: Record<string, Block>;
  /** The group's volume blocks, by name. */
  volumes: Record<string, Block>;
  /** The task's `volume_mount` blocks. */
  mounts: Block[];
}

/** Parses the repository's job.nomad. */
export async function readJob(): Promise<JobSpec> {
  const spec = await parseHcl("job.nomad", await Deno.readTextFile(repoPath("job.nomad")));
  const job = labelled(spec.job, "job");
  const group = labelled(job.group, "group");
  const task = labelled(group.task, "task");
  return {
    job,
    group,
    task,
    config: single(task.config, "task config"),
    env: single(task.env, "env") as Record<string, string>,
    ports: byLabel(single(group.network, "network").port, "port"),
    volumes: byLabel(group.volume, "volume"),
    mounts: all(task.volume_mount),
  };
}

/** What Nomad substitutes when it places one allocation. */
export interface NomadRuntime {
  /** `${node.unique.name}`. */
  nodeName: string;
  /** `${attr.unique.network.ip-address}`: the client's address, where its Consul agent listens. */
  nodeIp: string;
  /** The address of the allocation's ports (`NOMAD_HOST_IP_<label>`). */
  hostIp: string;
  /** Host port per port label (`NOMAD_HOST_PORT_<label>`). */
  hostPorts: Record<string, number>;
}

/**
 * The container's environment as Nomad builds it: its port variables plus
 * job.nomad's env with `${…}` interpolated. Only the run-time variables the
 * job uses are known, so a typo or a port label the group does not declare
 * (which Nomad would leave unexpanded or empty) throws; a new variable is
 * added here on purpose.
 */
export function containerEnv(spec: JobSpec, rt: NomadRuntime): Record<string, string> {
  const value = (expr: string): string => {
    if (expr === "node.unique.name") return rt.nodeName;
    if (expr === "attr.unique.network.ip-address") return rt.nodeIp;
    const m = /^NOMAD_HOST_(IP|PORT|ADDR)_(\w+)$/.exec(expr);
    const port = m ? rt.hostPorts[m[2]] : undefined;
    if (!m || !(m[2] in spec.ports) || port === undefined) {
      throw new Error(
        `job.nomad interpolates \${${expr}}: unknown here, or a port the group lacks`,
      );
    }
    return m[1] === "IP" ? rt.hostIp : m[1] === "PORT" ? String(port) : `${rt.hostIp}:${port}`;
  };
  const out: Record<string, string> = {};
  for (const label of Object.keys(spec.ports)) {
    for (const kind of ["IP", "PORT", "ADDR"]) {
      out[`NOMAD_HOST_${kind}_${label}`] = value(`NOMAD_HOST_${kind}_${label}`);
    }
  }
  for (const [name, v] of Object.entries(spec.env)) {
    out[name] = v.replace(/\$\{([^}]+)\}/g, (_, expr: string) => value(expr));
  }
  return out;
}

/** One build stage of the Dockerfile. */
export interface Stage {
  image: string;
  tag: string | undefined;
  digest: string | undefined;
  name: string | undefined;
  instructions: Instruction[];
}

/** A COPY: its `--from` value, its sources and its destination. */
export interface CopySpec {
  from: string | undefined;
  sources: string[];
  dest: string;
}

/** The Dockerfile's text, parsed document and build stages (the last is the runtime image). */
export interface DockerfileSpec {
  text: string;
  document: ReturnType<typeof DockerfileParser.parse>;
  stages: Stage[];
  final: Stage;
}

/** Parses the repository's Dockerfile. */
export async function readDockerfile(): Promise<DockerfileSpec> {
  const text = await Deno.readTextFile(repoPath("Dockerfile"));
  const document = DockerfileParser.parse(text);
  const stages: Stage[] = [];
  const froms = document.getFROMs();
  for (const inst of document.getInstructions()) {
    if (inst.getKeyword() === "FROM") {
      const from = froms[stages.length];
      stages.push({
        image: from.getImageName() ?? "",
        tag: from.getImageTag() ?? undefined,
        digest: from.getImageDigest() ?? undefined,
        name: from.getBuildStage() ?? undefined,
        instructions: [],
      });
    } else if (stages.length > 0) {
      stages[stages.length - 1].instructions.push(inst);
    }
  }
  return { text, document, stages, final: stages[stages.length - 1] };
}

/** The instructions of one kind in a stage. */
export function ofKind(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.getKeyword() === keyword);
}

/** The COPY instructions of a stage. */
export function copies(stage: Stage): CopySpec[] {
  return stage.instructions.filter((i) => i instanceof Copy).map((i) => {
    const from = i.getFlags().find((f) => f.getName() === "from")?.getValue() ?? undefined;
    const paths = i.getArguments().map((a) => a.getValue());
    return { from, sources: paths.slice(0, -1), dest: paths[paths.length - 1] };
  });
}

/** Where a COPY puts each source (a directory destination keeps the file name). */
export function copyTargets(c: CopySpec): { source: string; target: string }[] {
  return c.sources.map((source) => ({
    source,
    target: c.dest.endsWith("/") ? c.dest + source.split("/").pop() : c.dest,
  }));
}

/** Where the image puts every copied file. */
export function installedPaths(stage: Stage): string[] {
  return copies(stage).flatMap((c) => copyTargets(c).map((t) => t.target));
}

/** The directories a stage creates with `mkdir -p` (its mount points). */
export function createdDirs(stage: Stage): string[] {
  return ofKind(stage, "RUN").flatMap((i) => {
    const m = /\bmkdir\s+-p\s+([^&;|]+)/.exec(i.getArgumentsContent() ?? "");
    return m ? m[1].trim().split(/\s+/) : [];
  });
}

/** The stage's last WORKDIR, or `/`. */
export function workdir(stage: Stage): string {
  return ofKind(stage, "WORKDIR").pop()?.getArgumentsContent()?.trim() ?? "/";
}

/** The stage's ENTRYPOINT in exec (JSON array) form. */
export function entrypoint(stage: Stage): string[] {
  const entry = ofKind(stage, "ENTRYPOINT");
  if (entry.length !== 1) throw new Error(`expected one ENTRYPOINT, found ${entry.length}`);
  const words = JSON.parse(entry[0].getArgumentsContent() ?? "");
  if (!Array.isArray(words)) throw new Error("ENTRYPOINT is not in exec form");
  return words.map(String);
}

/** `ENV NAME=value` of a stage. */
export function stageEnv(stage: Stage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const inst of ofKind(stage, "ENV")) {
    const m = /^(\w+)=(.*)$/.exec(inst.getArgumentsContent()?.trim() ?? "");
    if (!m) throw new Error(`ENV ${inst.getArgumentsContent()}: only NAME=value is understood`);
    out[m[1]] = m[2].replace(/^"(.*)"$/, "$1");
  }
  return out;
}
