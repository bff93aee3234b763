/**
 * The Markdown report: machine, load, the four measurements side by side with
 * the baseline and their ratios, then the targets. The same text is printed
 * at the end of a run and written to bench/RESULTS.md.
 * @module
 */

import { ms, ratio } from "./format.ts";
import type { LifecycleResult } from "./lifecycle.ts";
import type { Subject } from "./node.ts";
import { ACTIONS, type ReactionResult } from "./reaction.ts";
import {
  type BenchResults,
  idleOf,
  lifecycleOf,
  loadOf,
  reactionOf,
  reactionPhase,
} from "./results.ts";
import { FIRST_RETRY_MS } from "../lib/readiness.ts";
import { HEALTH_INTERVAL_MS, POLL_INTERVAL_MS } from "./settings.ts";
import { median, summarize } from "./stats.ts";
import { corePercent, type TargetCheck } from "./targets.ts";

/**
 * Other processes keeping more than this many cores busy on average during a
 * phase make its tails (p99, max, worst run) unreliable: the report says so.
 */
export const NOISY_OTHER_CORES = 0.25;

const LABEL: Record<Subject, string> = {
  "ours-events": "ours, event stream",
  "ours-poll": "ours, `.primary` poll alone",
  "baseline": "baseline (bash loop)",
};

const ROLES = ["primary", "replica"] as const;

/** Renders the whole report. */
export function renderReport(r: BenchResults, targets: readonly TargetCheck[]): string {
  return [
    header(r),
    loadSection(r),
    reactionSection(r),
    idleSection(r),
    startupSection(r),
    stopSection(r),
    targetSection(r, targets),
  ].join("\n\n") + "\n";
}

function header(r: BenchResults): string {
  const m = r.machine;
  return [
    "# Benchmark results",
    "",
    `Measured by \`deno task bench${r.plan.quick ? " --quick" : ""}\` on ${m.date} ` +
    `in ${Math.round(r.wallS)} s. Machine: ${m.cpu}, ${m.cpus} CPUs (from /proc/cpuinfo), ` +
    `${m.os}, Deno ${m.deno}.`,
    "",
    "Ours is the supervisor run from source with exactly the permission flags of " +
    "`deno task compile`, default settings (`.primary` poll every " +
    `${POLL_INTERVAL_MS} ms), inotify off as on a real LiteFS mount; the baseline is ` +
    "`bench/baseline.sh`, the previous design written out literally. Both run against " +
    "the in-repo LiteFS simulator and Consul agent double and supervise the stand-in app, " +
    "one after the other in the same run. Ratios are ours ÷ baseline: below 1 means ours is " +
    "faster or smaller.",
    ...(r.plan.quick
      ? [
        "",
        "**Quick run**: too few samples to judge the targets by; run `deno task bench` for " +
        "the real figures.",
      ]
      : []),
  ].join("\n");
}

function loadSection(r: BenchResults): string {
  const noisy = r.load.filter((l) => l.otherCores > NOISY_OTHER_CORES);
  const verdict = noisy.length
    ? `**Noisy machine**: during ${
      noisy.map((l) => `${l.phase} (${l.otherCores.toFixed(2)})`).join(", ")
    } other processes kept more than ${NOISY_OTHER_CORES} of the ${r.machine.cpus} cores busy ` +
      "on average. Medians are robust to that; tails (p99, max, worst run) and start-up " +
      "times are inflated by it, for ours and the baseline alike."
    : `The machine was otherwise quiet: no phase saw other processes keep more than ` +
      `${NOISY_OTHER_CORES} cores busy on average.`;
  return [
    "## Machine load during the run",
    "",
    "Average cores kept busy, from /proc/stat (whole machine) and the harness's own " +
    "CPU times including every process it has reaped (supervisors, apps, floor modules).",
    "",
    table(
      ["phase", "wall s", "the bench", "everything else"],
      r.load.map((l) => [
        l.phase,
        l.wallS.toFixed(0),
        l.benchCores.toFixed(2),
        l.otherCores.toFixed(2),
      ]),
    ),
    "",
    verdict,
  ].join("\n");
}

function reactionSection(r: BenchResults): string {
  const subjects: Subject[] = ["ours-events", "ours-poll", "baseline"];
  const base = reactionOf(r, "baseline");
  const row = (name: string, pick: (x: ReactionResult) => number[]) => (subject: Subject) => {
    const s = summarize(pick(reactionOf(r, subject)));
    const b = summarize(pick(base));
    return [
      name,
      LABEL[subject],
      String(s.n),
      ms(s.p50),
      ms(s.p99),
      ms(s.max),
      subject === "baseline" ? "" : ratio(s.p99, b.p99),
    ];
  };
  const rows = [
    ...ACTIONS.flatMap((action) => subjects.map(row(action, (x) => x.samples[action]))),
    ...subjects.map(row("app up", (x) => x.appUp)),
    ...subjects.map(row("register after app up", (x) => x.registerAfterAppUp)),
  ];
  const series = subjects.map((subject) => {
    const x = reactionOf(r, subject);
    return `- ${LABEL[subject]}: ${x.changes} changes in ${(x.wallMs / 1000).toFixed(0)} s, ` +
      `${x.lost} lost; other processes kept ${
        loadOf(r, reactionPhase(subject))?.otherCores.toFixed(2) ?? "?"
      } cores busy.`;
  });
  const stamp = median(r.calibration.spawnStampMs);
  return [
    "## Reaction latency (ms)",
    "",
    "From a leadership change (the simulator flips `.primary` and sends the LiteFS event) " +
    "to each first action: the deregister request arriving at the Consul double and SIGTERM " +
    "arriving at the app (demotions), the app spawned and the register request arriving " +
    "(promotions). Changes alternate and are spread uniformly over each supervisor's " +
    "polling period; each waits until the previous one's effects are complete.",
    "",
    table(["action", "series", "n", "p50", "p99", "max", "p99 ÷ baseline"], rows),
    "",
    ...series,
    `- "spawn" includes ${ms(stamp)} ms (median) of fork, exec and bash start-up of the ` +
    "spawn stamp (bench/app.sh), measured on its own.",
    '- "app up" is the stand-in app\'s own record that its signal handlers are set and ' +
    "`/ping` is bound. Ours registers only an app that answers its health URL, probed at the " +
    `spawn, again ${FIRST_RETRY_MS} ms later and doubling up to ${HEALTH_INTERVAL_MS} ms ` +
    `(NDLS_HEALTH_INTERVAL), so \"register after app up\" is the ` +
    "supervisor's own share of its register figure; a negative figure means the " +
    "registration came before the app could answer.",
  ].join("\n");
}

function idleSection(r: BenchResults): string {
  const rows = (["ours-events", "baseline"] as const).flatMap((subject) =>
    ROLES.map((role) => {
      const x = idleOf(r, subject, role);
      const b = idleOf(r, "baseline", role);
      const ours = subject !== "baseline";
      return [
        ours ? "ours" : "baseline",
        role,
        x.cpuSecPerMin.toFixed(3),
        x.cpuSecPerMinWithReaped.toFixed(3),
        `${corePercent(x.cpuSecPerMinWithReaped).toFixed(2)} %`,
        x.peakRssMB.toFixed(1),
        ours ? ratio(x.cpuSecPerMinWithReaped, b.cpuSecPerMinWithReaped) : "",
        ours ? ratio(x.peakRssMB, b.peakRssMB) : "",
      ];
    })
  );
  const floors = r.idle.filter((x) => x.role === null).map((x) => [
    `\`${x.subject.replace("floor-", "")}\``,
    x.cpuSecPerMinWithReaped.toFixed(3),
    x.peakRssMB.toFixed(1),
  ]);
  const window = r.idle[0]?.windowS ?? NaN;
  return [
    `## Idle cost (${window.toFixed(0)} s window)`,
    "",
    "CPU time and peak RSS (VmHWM, MB = 10^6 bytes) of the supervisor process alone, never " +
    "the app, settled in its role, all measured side by side in the same window. " +
    "The baseline does its work in forked children (`sleep`, `curl`), so the CPU of children " +
    "it reaped is shown too and is what the ratio and the target use. One clock tick is " +
    `${(0.01 * 60 / window).toFixed(3)} s/min over this window.`,
    "",
    table(
      [
        "supervisor",
        "role",
        "CPU s/min (itself)",
        "CPU s/min (+ reaped)",
        "% of one core",
        "peak RSS MB",
        "CPU ÷ baseline",
        "RSS ÷ baseline",
      ],
      rows,
    ),
    "",
    "Deno's floor, in the same window: floor modules (bench/floor.ts) run with the " +
    "supervisor's flags: `empty` does nothing, `yaml` and `logtape` load one npm dependency, " +
    `\`modules\` loads every supervisor module, \`poll\` only runs the \`.primary\` poller ` +
    `(every ${POLL_INTERVAL_MS} ms, \`.primary\` absent as on a primary).`,
    "",
    table(["floor", "CPU s/min", "peak RSS MB"], floors),
  ].join("\n");
}

function startupSection(r: BenchResults): string {
  const rows = lifecycleRows(r, (x, b) => {
    const first = median(x.runs.map((y) => y.firstRoleLine));
    const known = median(x.runs.map((y) => y.firstRole));
    const spawned = median(x.runs.flatMap((y) => (y.appSpawned === null ? [] : [y.appSpawned])));
    const bSpawned = median(b.runs.flatMap((y) => (y.appSpawned === null ? [] : [y.appSpawned])));
    return {
      values: [ms(first), ms(known), x.role === "primary" ? ms(spawned) : ""],
      ratios: [
        ratio(known, median(b.runs.map((y) => y.firstRole))),
        x.role === "primary" ? ratio(spawned, bSpawned) : "",
      ],
    };
  });
  const cal = r.calibration.floorStartMs;
  return [
    "## Start-up (ms, median)",
    "",
    "From exec to the first role line the supervisor logs (ours logs `unknown` until it " +
    "has heard from LiteFS), to the first `primary` or `replica` line, and as primary to the " +
    "app spawned.",
    "",
    table(
      [
        "supervisor",
        "role",
        "runs",
        "first role line",
        "role known",
        "app spawned",
        "known ÷ baseline",
        "spawned ÷ baseline",
      ],
      rows,
    ),
    "",
    `Deno's share: exec to the first line of a module run with the same flags takes ` +
    `${ms(median(cal.empty))} ms for an empty one and ${ms(median(cal.modules))} ms with ` +
    `every supervisor module loaded (medians of ${cal.empty.length} runs).`,
  ].join("\n");
}

function stopSection(r: BenchResults): string {
  const rows = lifecycleRows(r, (x, b) => {
    const share = x.runs.map((y) => y.supervisorShare);
    const bShare = b.runs.map((y) => y.supervisorShare);
    const appStop = x.runs.flatMap((y) => (y.appStop === null ? [] : [y.appStop]));
    const toApp = x.runs.flatMap((y) => (y.signalToApp === null ? [] : [y.signalToApp]));
    return {
      values: [
        medMax(x.runs.map((y) => y.stopTotal)),
        x.role === "primary" ? ms(median(appStop)) : "",
        medMax(share),
        x.role === "primary" ? ms(median(toApp)) : "",
      ],
      ratios: [ratio(median(share), median(bShare))],
    };
  });
  return [
    "## Stop (ms, median / worst)",
    "",
    "From SIGTERM at the supervisor to its exit, with an app that stops at once; the app's " +
    "own stop (its SIGTERM to its exit, from its own records) and the supervisor's share " +
    "(the rest). A random pause of up to one polling period before each SIGTERM spreads it " +
    "over the baseline's `sleep 1`, during which bash defers a trapped signal.",
    "",
    table(
      [
        "supervisor",
        "role",
        "runs",
        "SIGTERM → exit",
        "app's own stop",
        "supervisor's share",
        "SIGTERM → app",
        "share ÷ baseline",
      ],
      rows,
    ),
    "",
    `Exit codes: ${
      r.lifecycle.map((x) =>
        `${x.subject} ${x.role} ${[...new Set(x.runs.map((y) => y.exitCode))].join("/")}`
      ).join(", ")
    }.`,
  ].join("\n");
}

/**
 * One row per supervisor and role: `cells` gets the run set and the
 * baseline's for the same role; ratio cells stay empty on the baseline's rows.
 */
function lifecycleRows(
  r: BenchResults,
  cells: (
    x: LifecycleResult,
    baseline: LifecycleResult,
  ) => { values: string[]; ratios: string[] },
): string[][] {
  return (["ours-events", "baseline"] as const).flatMap((subject) =>
    ROLES.map((role) => {
      const x = lifecycleOf(r, subject, role);
      const { values, ratios } = cells(x, lifecycleOf(r, "baseline", role));
      const ours = subject !== "baseline";
      return [
        ours ? "ours" : "baseline",
        role,
        `${x.runs.length}${x.lost ? ` (${x.lost} lost)` : ""}`,
        ...values,
        ...(ours ? ratios : ratios.map(() => "")),
      ];
    })
  );
}

function targetSection(r: BenchResults, targets: readonly TargetCheck[]): string {
  const met = targets.filter((t) => t.met).length;
  const misses = targets.filter((t) => !t.met).map((t) =>
    `- **${t.target}** missed by ${t.miss!.by}. Why: ${t.miss!.why} What would close it: ${
      t.miss!.fix
    }`
  );
  return [
    "## Targets",
    "",
    `${met} of ${targets.length} met${r.plan.quick ? " (quick run: indicative only)" : ""}.`,
    "",
    table(
      ["target", "limit", "measured", "met"],
      targets.map((t) => [t.target, t.limit, t.measured, t.met ? "yes" : "**no**"]),
    ),
    ...(misses.length ? ["", ...misses] : []),
  ].join("\n");
}

function medMax(xs: readonly number[]): string {
  return xs.length ? `${ms(median(xs))} / ${ms(Math.max(...xs))}` : "—";
}

function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}
