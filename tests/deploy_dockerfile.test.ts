/**
 * The Dockerfile, validated with `dockerfile-utils` and read with its parser
 * `dockerfile-ast` (Docker cannot run here), checked against deno.json's
 * compile task, litefs.yml's exec line and the supervisor's defaults.
 * @module
 */

import { readJob } from "./support/deployment.ts";
import { Copy, DockerfileParser, type Instruction } from "dockerfile-ast";
import { validate } from "dockerfile-utils";
import { parse as parseYaml } from "yaml";
import { assert, assertEquals } from "./support/assert.ts";
import { parseArgs } from "../lib/cli.ts";
import { SETTINGS } from "../lib/config.ts";

const ROOT = new URL("../", import.meta.url);
const TEXT = await Deno.readTextFile(new URL("Dockerfile", ROOT));
const DOCKERFILE = DockerfileParser.parse(TEXT);

/** One build stage: its base image, name and instructions. */
interface Stage {
  image: string;
  tag: string | undefined;
  digest: string | undefined;
  name: string | undefined;
  instructions: Instruction[];
}

function stages(): Stage[] {
  const out: Stage[] = [];
  const froms = DOCKERFILE.getFROMs();
  for (const inst of DOCKERFILE.getInstructions()) {
    if (inst.getKeyword() === "FROM") {
      const from = froms[out.length];
      out.push({
        image: from.getImageName() ?? "",
        tag: from.getImageTag() ?? undefined,
        digest: from.getImageDigest() ?? undefined,
        name: from.getBuildStage() ?? undefined,
        instructions: [],
      });
    } else if (out.length > 0) {
      out[out.length - 1].instructions.push(inst);
    }
  }
  return out;
}

const STAGES = stages();
const FINAL = STAGES[STAGES.length - 1];

function ofKind(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.getKeyword() === keyword);
}

/** A COPY's `--from` value, its sources and its destination. */
function copies(stage: Stage): { from: string | undefined; sources: string[]; dest: string }[] {
  return stage.instructions.filter((i) => i instanceof Copy).map((i) => {
    const from = i.getFlags().find((f) => f.getName() === "from")?.getValue() ?? undefined;
    const paths = i.getArguments().map((a) => a.getValue());
    return { from, sources: paths.slice(0, -1), dest: paths[paths.length - 1] };
  });
}

/** Where the final image puts a file copied to `dest` (a directory destination keeps the name). */
function installedPaths(stage: Stage): string[] {
  return copies(stage).flatMap((c) =>
    c.dest.endsWith("/") ? c.sources.map((s) => c.dest + s.split("/").pop()) : [c.dest]
  );
}

/** `ARG NAME=value` defaults, across all stages. */
function argDefaults(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const arg of DOCKERFILE.getARGs()) {
    const p = arg.getProperty();
    const value = p?.getValue();
    if (p && value !== null && value !== undefined) out[p.getName()] = value;
  }
  return out;
}

/** The exec line of litefs.yml, split into words (its test checks it needs no shell parsing). */
async function litefsExec(): Promise<string[]> {
  const doc = parseYaml(await Deno.readTextFile(new URL("litefs.yml", ROOT)));
  const exec = doc.exec as string | { cmd: string }[];
  const cmd = typeof exec === "string" ? exec : exec[exec.length - 1].cmd;
  return cmd.trim().split(/\s+/);
}

/** The default of one supervisor setting, as the README shows it (without backticks). */
function settingDefault(name: string): string {
  const s = SETTINGS.find((x) => x.name === name);
  assert(s, `no setting ${name}`);
  return s.default.replaceAll("`", "");
}

/** `VERSION="${OVERRIDE:-vX.Y.Z}"` defaults in the end-to-end prerequisites script. */
async function e2eVersion(name: string): Promise<string> {
  const script = await Deno.readTextFile(new URL("tests/e2e/install_deps.sh", ROOT));
  const m = new RegExp(`^${name}="\\$\\{\\w+:-v([^}]+)\\}"`, "m").exec(script);
  assert(m, `tests/e2e/install_deps.sh has no default for ${name}`);
  return m[1];
}

Deno.test("Dockerfile has no problems reported by dockerfile-utils", () => {
  assertEquals(validate(TEXT), []);
});

Deno.test("Dockerfile's entrypoint is `litefs mount` with litefs.yml where both read it", () => {
  const entry = ofKind(FINAL, "ENTRYPOINT");
  assertEquals(entry.length, 1);
  assertEquals(entry[0].getArgumentsContent(), `["litefs", "mount"]`);
  const installed = installedPaths(FINAL);
  assert(installed.includes("/usr/local/bin/litefs"), "litefs is not on PATH");
  // /etc/litefs.yml is on LiteFS's search path and the supervisor's default.
  const config = copies(FINAL).find((c) => c.sources.includes("litefs.yml"));
  assertEquals(config?.dest, "/etc/litefs.yml");
  assertEquals(settingDefault("NDLS_LITEFS_CONFIG"), "/etc/litefs.yml");
});

Deno.test("Dockerfile installs navidrome.toml where job.nomad's ND_CONFIGFILE points", async () => {
  const toml = copies(FINAL).find((c) => c.sources.includes("navidrome.toml"));
  const configFile = (await readJob()).env.ND_CONFIGFILE;
  assert(configFile, "job.nomad sets no ND_CONFIGFILE");
  assertEquals(toml?.dest, configFile);
});

Deno.test("Dockerfile builds the supervisor only through `deno task compile`", async () => {
  const builder = STAGES.find((s) => s.image === "denoland/deno");
  assert(builder?.name, "no named build stage from denoland/deno");
  const runs = STAGES.flatMap((s) => ofKind(s, "RUN")).map((i) => i.getArgumentsContent() ?? "");
  assert(
    ofKind(builder, "RUN").some((i) => /\bdeno task compile\b/.test(i.getArgumentsContent() ?? "")),
  );
  // Permissions given to `deno compile` are baked in: only deno.json may give them.
  assertEquals(runs.filter((r) => /\bdeno compile\b/.test(r)), []);

  const task: string =
    JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks.compile;
  const output = /--output[= ](\S+)/.exec(task)?.[1];
  assert(output, "deno.json's compile task names no --output");
  const workdir = ofKind(builder, "WORKDIR").pop()?.getArgumentsContent() ?? "/";
  const fromBuilder = copies(FINAL).find((c) => c.from === builder.name);
  assertEquals(fromBuilder?.sources, [`${workdir.replace(/\/$/, "")}/${output}`]);
});

Deno.test("Dockerfile installs the supervisor and Navidrome where litefs.yml executes them", async () => {
  const [supervisor, ...args] = await litefsExec();
  const invocation = parseArgs(args);
  assert(invocation.kind === "run");
  const installed = installedPaths(FINAL);
  assert(installed.includes(supervisor), `${supervisor} is not installed by the Dockerfile`);
  assert(installed.includes(invocation.command[0]), `${invocation.command[0]} is not installed`);
});

Deno.test("Dockerfile pins Deno 2.x, LiteFS 0.5.x and Navidrome, as the end-to-end tests do", async () => {
  const deno = STAGES.find((s) => s.image === "denoland/deno");
  assert(deno?.tag && /^(debian-)?2\.\d+\.\d+$/.test(deno.tag), `Deno tag ${deno?.tag}`);
  assert(deno.digest === undefined || /^sha256:[0-9a-f]{64}$/.test(deno.digest));

  const litefs = copies(FINAL).find((c) => c.from?.startsWith("flyio/litefs:"))?.from;
  const litefsTag = litefs?.split(":")[1];
  assert(litefsTag && /^0\.5\.\d+$/.test(litefsTag), `LiteFS image ${litefs}`);
  assertEquals(litefsTag, await e2eVersion("LITEFS_VERSION"));

  const args = argDefaults();
  assert(/^0\.63\.\d+$/.test(args.NAVIDROME_VERSION ?? ""), `Navidrome ${args.NAVIDROME_VERSION}`);
  assertEquals(args.NAVIDROME_VERSION, await e2eVersion("NAVIDROME_VERSION"));
  for (const arch of ["AMD64", "ARM64"]) {
    assert(/^[0-9a-f]{64}$/.test(args[`NAVIDROME_SHA256_${arch}`] ?? ""), `no ${arch} checksum`);
  }
  const runs = STAGES.flatMap((s) => ofKind(s, "RUN")).map((i) => i.getArgumentsContent() ?? "");
  assert(runs.some((r) => r.includes("navidrome") && /sha256sum -c/.test(r)), "no checksum check");
});

Deno.test("Dockerfile's runtime is glibc Debian with ffmpeg, fuse3 and CA certificates", () => {
  // `deno compile` output and Navidrome's release build are glibc binaries.
  assertEquals(FINAL.image, "debian");
  assert(FINAL.tag?.startsWith("bookworm"), `runtime base debian:${FINAL.tag}`);
  const installs = ofKind(FINAL, "RUN").map((i) => i.getArgumentsContent() ?? "").join(" ");
  for (const pkg of ["ffmpeg", "fuse3", "ca-certificates"]) {
    assert(new RegExp(`apt-get install[^&;]*\\s${pkg}\\b`).test(installs), `${pkg} not installed`);
  }
});

Deno.test("Dockerfile has no HEALTHCHECK (replicas run no Navidrome and would look unhealthy)", () => {
  const checks = DOCKERFILE.getInstructions().filter((i) => i.getKeyword() === "HEALTHCHECK");
  assertEquals(checks.map((i) => i.getArgumentsContent()), []);
});

Deno.test("Dockerfile copies only files that exist in the repository", async () => {
  for (const c of STAGES.flatMap(copies).filter((c) => c.from === undefined)) {
    for (const src of c.sources) {
      await Deno.stat(new URL(src, ROOT)).catch(() => {
        throw new Error(`COPY ${src}: no such file in the repository`);
      });
    }
  }
});
