import type { Clock } from '../../src/core/clock.ts'

/**
 * A clock that moves only when the test moves it (T51: expiry boundaries are tested at ±1 s,
 * never by sleeping). Starts at a whole second near the real time, so anything that also looks
 * at the wall clock (WebAuthn, TLS) still sees a plausible date.
 */
export class ManualClock implements Clock {
  #now: number

  constructor(start = Math.floor(Date.now() / 1000) * 1000) {
    this.#now = start
  }

  now(): number {
    return this.#now
  }

  /** Moves time forward by `ms` (never backwards). */
  advance(ms: number): number {
    if (!(ms >= 0)) throw new Error(`ManualClock.advance: ${ms} is not a forward step`)
    this.#now += ms
    return this.#now
  }

  /** Jumps to an absolute time, at or after the current one. */
  set(ms: number): number {
    if (!(ms >= this.#now)) throw new Error(`ManualClock.set: ${ms} is before now (${this.#now})`)
    this.#now = ms
    return this.#now
  }
}
