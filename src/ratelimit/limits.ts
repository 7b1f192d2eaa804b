import type { Logger } from '../observe/log.ts'
import type { Limit, LimitStore, MemoryLimitStore, Verdict } from './limiter.ts'

/**
 * Endpoint groups (LIMIT-1): `auth` (sign-in, callbacks, invites, operator), `intercept` (the AI
 * endpoints), `api` (the admin API).
 */
export type Group = 'auth' | 'intercept' | 'api'

/** One counted partition: a policy name (shown in headers), the private key it counts under, its limit. */
export interface Partition {
  readonly policy: string
  readonly key: string
  readonly limit: Limit
}

export interface RateOutcome {
  readonly allowed: boolean
  /** Redis was unreachable for a group that fails closed (auth): answer 503. */
  readonly unavailable: boolean
  /** `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10), plus `Retry-After` when refused. */
  readonly headers: Readonly<Record<string, string>>
}

export interface RateObserver {
  /** A request was refused (429) on a partition of this group. */
  refused(group: Group): void
  /** The shared store failed and the per-instance fallback decided (D7). */
  fallback(group: Group): void
}

/**
 * Applies the partitions of one request in order, stopping at the first refusal. D7 outage
 * policy: if the shared store (Redis) fails, `auth` fails closed (503) and every other group
 * falls back to this instance's memory limits, with a logged and counted alert.
 */
export class RateLimiter {
  constructor(
    private readonly store: LimitStore,
    private readonly fallback: MemoryLimitStore,
    private readonly log: Logger,
    private readonly observer: RateObserver = { refused: () => {}, fallback: () => {} },
  ) {}

  async check(group: Group, partitions: readonly Partition[]): Promise<RateOutcome> {
    const seen: [Partition, Verdict][] = []
    for (const p of partitions) {
      let v: Verdict
      try {
        v = await this.store.admit(`${group}:${p.key}`, p.limit)
      } catch {
        if (group === 'auth') {
          this.log.error({ event: 'ratelimit_store_down', kind: group }, 'rate-limit store unreachable: auth requests refused (fail closed)')
          this.observer.fallback(group)
          return { allowed: false, unavailable: true, headers: { 'retry-after': '5' } }
        }
        this.log.warn({ event: 'ratelimit_store_down', kind: group }, 'rate-limit store unreachable: using this instance\'s memory limits')
        this.observer.fallback(group)
        v = this.fallback.admitSync(`${group}:${p.key}`, p.limit)
      }
      seen.push([p, v])
      if (!v.allowed) {
        this.observer.refused(group)
        return { allowed: false, unavailable: false, headers: { ...rateHeaders(seen), 'retry-after': String(Math.max(1, v.resetS)) } }
      }
    }
    return { allowed: true, unavailable: false, headers: rateHeaders(seen) }
  }
}

/** RFC 9651 sf-string: the policy names are our own constants, so only the quoting rules apply. */
function sfString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
}

/** `RateLimit-Policy: "name";q=30;w=60, …` and `RateLimit: "name";r=12;t=41, …` for the partitions counted. */
export function rateHeaders(seen: readonly (readonly [Partition, Verdict])[]): Record<string, string> {
  if (seen.length === 0) return {}
  return {
    'ratelimit-policy': seen.map(([p]) => `${sfString(p.policy)};q=${p.limit.limit};w=${p.limit.windowS}`).join(', '),
    ratelimit: seen.map(([p, v]) => `${sfString(p.policy)};r=${v.remaining};t=${v.resetS}`).join(', '),
  }
}
