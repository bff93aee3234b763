/**
 * The few assertions the tests use, on top of `node:assert` (JSR's
 * `@std/assert` cannot be reached from our machines).
 * @module
 */

import { deepStrictEqual, ok } from "node:assert/strict";

/** Asserts deep, strict equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  deepStrictEqual(actual, expected, msg);
}

/** Asserts a truthy value. */
export function assert(value: unknown, msg?: string): asserts value {
  ok(value, msg);
}

/** Asserts that `text` contains `part`. */
export function assertIncludes(text: string, part: string, msg?: string): void {
  ok(
    text.includes(part),
    msg ?? `expected ${JSON.stringify(text)} to include ${JSON.stringify(part)}`,
  );
}

/** Asserts that `text` does not contain `part`. */
export function assertExcludes(text: string, part: string, msg?: string): void {
  ok(!text.includes(part), msg ?? `expected output not to include ${JSON.stringify(part)}`);
}
