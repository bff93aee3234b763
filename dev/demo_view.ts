/**
 * The demo's terminal output: a live table redrawn in place on an interactive
 * terminal, or plain lines (no cursor movement) when the output is a pipe or
 * a file, so a script or test can read it.
 * @module
 */

/** One node's row. */
export interface NodeRow {
  node: string;
  /** primary, replica, unknown, or starting/exited for the supervisor's own state. */
  role: string;
  appPid: number | null;
  /** passing, warning, critical or absent. */
  consul: string;
  /** Wall-clock time of the last role change, or null before the first. */
  lastTransition: number | null;
  /** The newest reaction, e.g. `start 9ms`, or null. */
  reaction: string | null;
}

/** `HH:MM:SS.mmm` in local time. */
export function clock(at: number): string {
  const d = new Date(at);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${
    p(d.getMilliseconds(), 3)
  }`;
}

const HEADER = ["NODE", "ROLE", "APP PID", "CONSUL", "LAST TRANSITION", "REACTION"];

/** The table as aligned text lines; `color` decorates a cell after padding. */
export function renderTable(
  rows: readonly NodeRow[],
  color: (column: number, text: string, padded: string) => string = (_c, _t, p) => p,
): string[] {
  const cells = rows.map((r) => [
    r.node,
    r.role,
    r.appPid === null ? "-" : String(r.appPid),
    r.consul,
    r.lastTransition === null ? "-" : clock(r.lastTransition),
    r.reaction ?? "-",
  ]);
  const widths = HEADER.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[], decorate: boolean) =>
    c.map((t, i) => {
      const padded = t.padEnd(widths[i]);
      return decorate ? color(i, t, padded) : padded;
    }).join("  ").trimEnd();
  return [line(HEADER, false), ...cells.map((c) => line(c, true))];
}

/**
 * The whole cluster on one line, for plain output:
 * `[  3.2s] node-1 role=primary pid=1234 consul=passing | node-2 role=replica pid=- …`.
 */
export function snapshotLine(elapsedMs: number, rows: readonly NodeRow[]): string {
  const t = (elapsedMs / 1000).toFixed(1).padStart(6);
  const parts = rows.map((r) =>
    `${r.node} role=${r.role} pid=${r.appPid ?? "-"} consul=${r.consul}`
  );
  return `[${t}s] ${parts.join(" | ")}`;
}

const ESC = "\x1b[";

/**
 * Where lines go. On a terminal the table stays at the bottom and log lines
 * scroll above it; otherwise every log line and every changed snapshot is
 * printed once, as plain text.
 */
export class Screen {
  /** Whether output is an interactive terminal (live table). */
  readonly live: boolean;
  readonly #colors: boolean;
  readonly #encoder = new TextEncoder();
  /** The table as last drawn, and how many lines it took. */
  #table = "";
  #tableHeight = 0;
  #lastSnapshot = "";

  /** @param live redraw in place (true only for a terminal) */
  constructor(live: boolean, colors: boolean) {
    this.live = live;
    this.#colors = colors && live;
    if (this.live) this.#write(`${ESC}?25l`); // hide the cursor while redrawing
  }

  /** Prints a log line (above the table on a terminal). */
  log(line: string): void {
    if (!this.live) return this.#write(line + "\n");
    this.#write(`${this.#eraseTable()}${line}\n${this.#table}`);
  }

  /** Shows the current state: redraws the table, or prints a snapshot line if it changed. */
  show(elapsedMs: number, rows: readonly NodeRow[], footer: string): void {
    if (!this.live) {
      const snap = snapshotLine(elapsedMs, rows);
      // Compare without the time prefix: print only real changes.
      const key = snap.slice(snap.indexOf("]"));
      if (key !== this.#lastSnapshot) {
        this.#lastSnapshot = key;
        this.#write(snap + "\n");
      }
      return;
    }
    const lines = [
      "",
      ...renderTable(rows, (c, t, p) => this.#paint(c, t, p)),
      "",
      footer,
    ];
    const erase = this.#eraseTable();
    this.#table = lines.map((l) => `${l}${ESC}K\n`).join("");
    this.#tableHeight = lines.length;
    this.#write(erase + this.#table);
  }

  /** Restores the cursor; the table stays on screen as the final state. */
  close(): void {
    if (this.live) this.#write(`${ESC}?25h`);
  }

  #eraseTable(): string {
    // Up to the table's first line, then clear to the end of the screen.
    return this.#tableHeight > 0 ? `${ESC}${this.#tableHeight}F${ESC}J` : "";
  }

  #paint(column: number, text: string, padded: string): string {
    if (!this.#colors) return padded;
    const code = column === 1
      ? { primary: "32;1", replica: "2", unknown: "33" }[text]
      : column === 3
      ? { passing: "32", warning: "33", critical: "31" }[text]
      : undefined;
    return code ? `${ESC}${code}m${padded}${ESC}0m` : padded;
  }

  #write(text: string): void {
    const bytes = this.#encoder.encode(text);
    let off = 0;
    while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
  }
}
