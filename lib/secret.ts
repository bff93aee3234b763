/**
 * A wrapper that keeps a credential out of every string conversion, so a
 * config object can be logged, printed or serialised without leaking the
 * Consul token.
 * @module
 */

const REDACTED = "[redacted]";

/** Holds a secret value; only {@link Secret.reveal} gives it back. */
export class Secret {
  #value: string;

  /** Wraps `value`. */
  constructor(value: string) {
    this.#value = value;
  }

  /** The secret itself, for the one place that must send it (the request header). */
  reveal(): string {
    return this.#value;
  }

  /** Always `[redacted]`. */
  toString(): string {
    return REDACTED;
  }

  /** Always `[redacted]`, so `JSON.stringify` never leaks it. */
  toJSON(): string {
    return REDACTED;
  }

  /** Always `[redacted]`, so `console.log` / `Deno.inspect` never leak it. */
  [Symbol.for("Deno.customInspect")](): string {
    return REDACTED;
  }
}

/**
 * Replaces every occurrence of each secret in `text` with `[redacted]`: a
 * last line of defence for text that came from elsewhere (an agent's error
 * body, an exception message) before it reaches a log or status page.
 */
export function redact(text: string, secrets: readonly (Secret | null)[]): string {
  let out = text;
  for (const s of secrets) {
    const v = s?.reveal();
    if (v) out = out.split(v).join(REDACTED);
  }
  return out;
}
