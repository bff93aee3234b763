/**
 * Supervisor settings the bench pins and its targets are computed from.
 * Kept free of imports, because the floor module (floor.ts) loads it while
 * being measured.
 * @module
 */

/**
 * `.primary` poll interval of the supervisor under bench: its default
 * NDLS_POLL_INTERVAL, set explicitly so the poll-only target (interval plus
 * 50 ms) is computed from the value actually in use.
 */
export const POLL_INTERVAL_MS = 200;

/**
 * Readiness probe interval of the supervisor under bench: its default
 * NDLS_HEALTH_INTERVAL, set explicitly because ours registers only an app
 * that answers its health URL, so this interval shows in the register figures.
 */
export const HEALTH_INTERVAL_MS = 500;
