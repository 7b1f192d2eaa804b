import type { Kysely } from 'kysely'
import { withAudit, type AuditLog } from '../audit/audit.ts'
import type { Clock } from '../core/clock.ts'
import type { Actor } from '../keys/keys.repo.ts'
import type { DB } from '../storage/schema.ts'
import type { Limit } from './limiter.ts'
import type { Group } from './limits.ts'

/** The groups an org's tier can change (`auth` is per client address, before any org is known). */
export type TierGroup = Exclude<Group, 'auth'>
export const TIER_GROUPS: readonly TierGroup[] = ['intercept', 'api']

const CACHE_MS = 10_000

/**
 * Per-org rate tiers (LIMIT-1): an operator's override of a group's per-minute limit for one org,
 * stored and audited. Read through a short cache (changes reach every instance within 10 s).
 */
export class RateTiers {
  readonly #cache = new Map<string, { perMinute: number | undefined; until: number }>()

  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly defaults: Readonly<Record<Group, number>>,
  ) {}

  /** The limit for `group` in `orgId`: its tier, else the instance default. */
  async limit(orgId: string | undefined, group: Group): Promise<Limit> {
    const fallback = { limit: this.defaults[group], windowS: 60 }
    if (orgId === undefined || group === 'auth') return fallback
    const key = `${orgId}\0${group}`
    const now = this.clock.now()
    let hit = this.#cache.get(key)
    if (!hit || hit.until <= now) {
      const row = await this.db.selectFrom('rate_tier').select('per_minute').where('org_id', '=', orgId).where('endpoint_group', '=', group).executeTakeFirst()
      hit = { perMinute: row?.per_minute, until: now + CACHE_MS }
      if (this.#cache.size > 10_000) this.#cache.clear()
      this.#cache.set(key, hit)
    }
    return hit.perMinute === undefined ? fallback : { limit: hit.perMinute, windowS: 60 }
  }

  /** Sets (or with `perMinute` undefined, removes) an org's tier; audited in the org's chain. */
  async set(orgId: string, group: TierGroup, perMinute: number | undefined, actor: Actor): Promise<void> {
    await withAudit(this.db, async (trx) => {
      await trx.deleteFrom('rate_tier').where('org_id', '=', orgId).where('endpoint_group', '=', group).execute()
      if (perMinute !== undefined) await trx.insertInto('rate_tier').values({ org_id: orgId, endpoint_group: group, per_minute: perMinute, updated_at: this.clock.now() }).execute()
      await this.audit.append(trx, { chainId: orgId, actorType: actor.type, actorId: actor.id, action: 'rate_tier_changed', targetType: 'rate_tier', targetId: `${group}:${perMinute ?? 'default'}`, outcome: 'success', requestId: actor.requestId ?? null })
    })
    this.#cache.delete(`${orgId}\0${group}`)
  }

  async list(orgId: string): Promise<{ group: TierGroup; perMinute: number }[]> {
    const rows = await this.db.selectFrom('rate_tier').select(['endpoint_group', 'per_minute']).where('org_id', '=', orgId).orderBy('endpoint_group').execute()
    return rows.map((r) => ({ group: r.endpoint_group as TierGroup, perMinute: r.per_minute }))
  }
}
