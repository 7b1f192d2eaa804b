import type { Clock } from '../core/clock.ts'
import { randomAlnum } from '../core/crypto.ts'
import type { ClientFormat, ModelRequest } from '../core/model.ts'
import type { Domain, Intent } from '../classify/facts.ts'

/**
 * A request held while its sender shows their reasoning (GW-5). It lives in this process's
 * memory only — never in the database, the cache or a log — and is dropped at `expiresAt`
 * (at most 5 minutes, TRANSIT-2) or once answered.
 */
export interface Hold {
  readonly id: string
  readonly orgId: string
  readonly keyId: string
  readonly environment: 'sandbox' | 'production'
  readonly client: ClientFormat
  readonly request: ModelRequest
  readonly domain: Domain
  readonly intent: Intent
  readonly question: string
  readonly createdAt: number
  readonly expiresAt: number
  /** The policy decision that asked for the challenge, carried to the reply's decision record. */
  readonly ruleId: string | null
  readonly redact: readonly string[]
  attempts: number
}

export type Take =
  | { readonly kind: 'held'; readonly hold: Hold }
  | { readonly kind: 'expired' }
  | { readonly kind: 'unknown' }
  /** A live-looking id minted by another instance: holds never leave the process that made them. */
  | { readonly kind: 'elsewhere' }

export interface HoldSettings {
  readonly ttlMs: number
  readonly maxAttempts: number
  /** Most holds kept at once; beyond it the oldest is dropped (memory is bounded). */
  readonly maxHolds: number
}

/**
 * Challenge ids: `ch_` + 101 random bits, the holding instance's tag, and the expiry (ms, base36),
 * so an expired id is told apart from an unknown one and a reply that reached the wrong instance
 * gets a clear answer (sticky routing is required; see README "Several instances").
 */
export function challengeId(instance: string, expiresAt: number): string {
  return `ch_${randomAlnum(17)}_${instance}_${expiresAt.toString(36)}`
}

export const CHALLENGE_ID = /^ch_[0-9A-Za-z]{17}_([0-9a-z]{6})_([0-9a-z]{1,12})$/

export class ChallengeHolds {
  readonly #holds = new Map<string, Hold>()
  readonly #sweep: NodeJS.Timeout
  /** This process's tag in the ids it mints (random per start: a restarted instance holds nothing). */
  readonly instance = randomAlnum(6).toLowerCase()

  constructor(
    private readonly clock: Clock,
    readonly settings: HoldSettings,
  ) {
    this.#sweep = setInterval(() => this.sweep(), 1000)
    this.#sweep.unref()
  }

  hold(h: Omit<Hold, 'id' | 'createdAt' | 'expiresAt' | 'attempts'>): Hold {
    this.sweep()
    while (this.#holds.size >= this.settings.maxHolds) this.#holds.delete(this.#holds.keys().next().value!)
    const now = this.clock.now()
    const expiresAt = now + this.settings.ttlMs
    const hold: Hold = { ...h, id: challengeId(this.instance, expiresAt), createdAt: now, expiresAt, attempts: 0 }
    this.#holds.set(hold.id, hold)
    return hold
  }

  /** The live hold for `id`, only for the key that made it (another key gets `unknown`). */
  take(id: string, keyId: string): Take {
    const m = CHALLENGE_ID.exec(id)
    if (!m) return { kind: 'unknown' }
    const now = this.clock.now()
    const hold = this.#holds.get(id)
    if (hold && hold.expiresAt > now) return hold.keyId === keyId ? { kind: 'held', hold } : { kind: 'unknown' }
    if (hold) this.#holds.delete(id)
    if (Number.parseInt(m[2]!, 36) <= now) return { kind: 'expired' }
    return m[1] === this.instance ? { kind: 'unknown' } : { kind: 'elsewhere' }
  }

  /** Drops a hold (answered, or out of attempts): its request is released from memory. */
  release(id: string): void {
    this.#holds.delete(id)
  }

  /** Drops every expired hold; returns how many are left. */
  sweep(): number {
    const now = this.clock.now()
    for (const [id, h] of this.#holds) if (h.expiresAt <= now) this.#holds.delete(id)
    return this.#holds.size
  }

  /** Live holds (TRANSIT-2 tests count them). */
  get size(): number {
    return this.#holds.size
  }

  close(): void {
    clearInterval(this.#sweep)
    this.#holds.clear()
  }
}
