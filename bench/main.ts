/**
 * `deno task bench [--quick]`: reaction latency, idle cost, start-up and stop
 * of the supervisor and of the shell-loop baseline (bench/baseline.sh), in
 * one run on one machine; prints a Markdown report with the ratios and the
 * targets of issue 6 and writes it to bench/RESULTS.md (full run).
 *
 * Phases run one after the other, never overlapping, so no measurement
 * competes with another; the machine load of each phase is reported so a
 * noisy machine shows. Timing never fails the run: only a harness failure
 * (nothing could be measured) exits non-zero.
 * @module
 */

import { denoFloorStartups, spawnStampOffsets } from "./calibration.ts";
import { cleanupAll } from "./cleanup.ts";
import { type IdleCase, measureIdle } from "./idle.ts";
import { type LifecycleResult, measureLifecycle } from "./lifecycle.ts";
import { type PhaseLoad, phaseLoad, sampleLoad } from "./load.ts";
import type { Subject } from "./node.ts";
import {
  BASELINE_PERIOD_MS,
  OURS_PERIOD_MS,
  parsePlan,
  type Plan,
  USAGE,
  UsageError,
} from "./plan.ts";
import { clockTicksPerSecond, cpuModel } from "./proc.ts";
import { measureReaction, type ReactionResult } from "./reaction.ts";
import { renderReport } from "./report.ts";
import { type BenchResults, type Calibration, type Machine, reactionPhase } from "./results.ts";
import { checkTargets } from "./targets.ts";

/** The reaction series, in run order. */
const REACTION_SUBJECTS: readonly Subject[] = ["ours-events", "ours-poll", "baseline"];
/** Idle, start-up and stop compare the default configuration with the baseline. */
const COMPARED: readonly Subject[] = ["ours-events", "baseline"];
const ROLES = ["primary", "replica"] as const;
/** A progress line every this many changes of a reaction series. */
const PROGRESS_EVERY = 50;

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

/** Runs the bench with the given arguments; resolves with the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  let plan: Plan | null;
  try {
    plan = parsePlan(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`bench: ${e.message}\n${USAGE}`);
    return EXIT_USAGE;
  }
  if (plan === null) {
    console.log(USAGE);
    return EXIT_OK;
  }
  const onSignal = (sig: Deno.Signal, code: number) => async () => {
    progress(`${sig}: cleaning up`);
    await cleanupAll();
    Deno.exit(code);
  };
  Deno.addSignalListener("SIGINT", onSignal("SIGINT", 130));
  Deno.addSignalListener("SIGTERM", onSignal("SIGTERM", 143));
  try {
    const results = await measureAll(plan);
    const targets = checkTargets(results);
    const report = renderReport(results, targets);
    console.log(report);
    if (plan.out) {
      await Deno.writeTextFile(plan.out, report);
      progress(`report written to ${plan.out}`);
    }
    const met = targets.filter((t) => t.met).length;
    progress(`targets: ${met} of ${targets.length} met (missed targets never fail the run)`);
    return EXIT_OK;
  } catch (e) {
    console.error(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    return EXIT_FAILED;
  } finally {
    await cleanupAll();
  }
}

/** Every phase, in order, with the machine load of each. */
async function measureAll(plan: Plan): Promise<BenchResults> {
  const started = performance.now();
  const machine: Machine = (() => {
    const { model, cpus } = cpuModel();
    return {
      cpu: model,
      cpus,
      os: `${Deno.build.os} ${Deno.osRelease()}`,
      deno: Deno.version.deno,
      date: new Date().toISOString(),
    };
  })();
  const ticks = await clockTicksPerSecond();
  const load: PhaseLoad[] = [];
  const phase = async <T>(name: string, run: () => Promise<T>): Promise<T> => {
    progress(`${name} …`);
    const before = sampleLoad(ticks);
    const out = await run();
    const l = phaseLoad(name, before, sampleLoad(ticks));
    load.push(l);
    progress(`${name}: ${l.wallS.toFixed(0)} s`);
    return out;
  };

  const calibration: Calibration = await phase("calibration", async () => ({
    spawnStampMs: await spawnStampOffsets(plan.stampRuns),
    floorStartMs: {
      empty: await denoFloorStartups(plan.floorRuns, "empty"),
      modules: await denoFloorStartups(plan.floorRuns, "modules"),
    },
  }));

  const reaction: ReactionResult[] = [];
  for (const subject of REACTION_SUBJECTS) {
    const changes = subject === "baseline"
      ? plan.reactionChanges.baseline
      : plan.reactionChanges.ours;
    reaction.push(
      await phase(reactionPhase(subject), () =>
        measureReaction({
          subject,
          changes,
          phaseSpreadMs: periodOf(subject),
          progress: (done) => {
            if (done % PROGRESS_EVERY === 0 && done < changes) {
              progress(`  ${done} of ${changes} changes`);
            }
          },
        })),
    );
  }

  const cases: IdleCase[] = COMPARED.flatMap((subject) => ROLES.map((role) => ({ subject, role })));
  const idle = await phase("idle", () => measureIdle(cases, plan.idleWindowMs));

  const lifecycle = await phase("start-up and stop", async () => {
    const out: LifecycleResult[] = [];
    for (const subject of COMPARED) {
      for (const role of ROLES) {
        out.push(
          await measureLifecycle({
            subject,
            role,
            runs: plan.lifecycleRuns,
            phaseSpreadMs: periodOf(subject),
          }),
        );
      }
    }
    return out;
  });

  return {
    plan,
    machine,
    calibration,
    reaction,
    idle,
    lifecycle,
    load,
    wallS: (performance.now() - started) / 1000,
  };
}

/** The polling period a subject's changes and signals are spread over. */
function periodOf(subject: Subject): number {
  return subject === "baseline" ? BASELINE_PERIOD_MS : OURS_PERIOD_MS;
}

/** Progress goes to stderr, so stdout carries the report alone. */
function progress(text: string): void {
  console.error(`bench: ${text}`);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
