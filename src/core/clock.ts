/**
 * The one source of wall-clock time. Everything that expires (sessions, keys, holds, records)
 * reads `now()` from an injected Clock, so tests move time instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }

/** High-resolution monotonic milliseconds for measuring durations (not wall time). */
export function monotonicMs(): number {
  return performance.now()
}
