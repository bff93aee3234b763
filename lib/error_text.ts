/**
 * One line describing an error for logs, `/status` and `doctor`. A failed
 * `fetch` says only "fetch failed"; the reason ("Connection refused", a DNS
 * or certificate error) is in its cause, behind the URL it already names.
 * @module
 */

/** The first line of an error's message, with a fetch failure's cause unwrapped. */
export function errorText(e: unknown): string {
  if (!(e instanceof Error)) return String(e).split("\n")[0];
  const cause = e.cause instanceof Error ? e.cause.message : null;
  const text = cause
    ? cause.replace(/^error sending request (?:from \S+ )?for (?:url )?\S+ \([^)]*\): /, "")
      .replace(/^client error \(\w+\): /, "")
    : e.message;
  return text.split("\n")[0];
}
