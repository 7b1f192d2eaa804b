import type { Kysely } from 'kysely'
import { INSTANCE_CHAIN, withAudit, type AuditLog } from '../audit/audit.ts'
import type { Clock } from '../core/clock.ts'
import type { OrgKeyring } from '../privacy/org-keys.ts'
import type { DB } from '../storage/schema.ts'

/** The most a terminated org's data may outlive its termination (RIGHTS-2). */
export const MAX_PURGE_DELAY_MS = 30 * 24 * 3600_000

/**
 * Org-owned tables in the order they are emptied (rows that others reference go last). Tables
 * added later that have an `org_id` column are found by introspection and emptied first (a new
 * table is a leaf more often than not); the test that scans every table for the org id keeps
 * this honest.
 */
const KNOWN = ['decision', 'idempotency', 'rate_tier', 'policy', 'org_setting', 'invite', 'sso_config', 'session', 'user_identity', 'membership', 'api_key', 'org_key'] as const

export interface PurgeSettings {
  /** How long after termination the org's data must be gone (0 = at the next run; at most 30 days). */
  readonly delayMs: number
  /** How often the job runs. */
  readonly everyMs: number
}

/**
 * The retention job (RIGHTS-2, D13): deletes every row of each terminated org — decisions, its
 * audit chain and checkpoints, memberships, keys, policies, settings, idempotency records, rate
 * tiers, invites, SSO, org keys, the org row — and records `org_purged` in the instance chain.
 *
 * The delay is a deadline, never exceeded: an org is purged at the first run at or after
 * `terminated_at + delay − one job period`, so the run that comes before the deadline takes it
 * (a run never late by a whole period). Safe to run on every instance at once: each org is
 * claimed with a row lock (PostgreSQL) or the write lock (SQLite) and skipped once gone.
 */
export class OrgPurge {
  #orgTables: string[] | undefined

  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly keyring: OrgKeyring,
    private readonly settings: PurgeSettings,
  ) {
    if (settings.delayMs < 0 || settings.delayMs > MAX_PURGE_DELAY_MS) throw new Error('purge delay must be 0 to 30 days')
  }

  /** Purges every org whose deadline falls before the next run; returns how many. */
  async run(): Promise<number> {
    const cutoff = this.clock.now() - Math.max(0, this.settings.delayMs - this.settings.everyMs)
    const due = await this.db.selectFrom('org').select('id').where('terminated_at', 'is not', null).where('terminated_at', '<=', cutoff).orderBy('terminated_at').execute()
    let purged = 0
    for (const { id } of due) if (await this.purge(id)) purged++
    return purged
  }

  /** Deletes every row of one terminated org in one transaction; false when it is gone or live. */
  async purge(orgId: string): Promise<boolean> {
    const tables = await this.#tables()
    return withAudit(this.db, async (trx) => {
      // Claim the org (a no-op update takes its row lock): a concurrent purge waits, then finds nothing.
      const claimed = await trx.updateTable('org').set((eb) => ({ terminated_at: eb.ref('terminated_at') }))
        .where('id', '=', orgId).where('terminated_at', 'is not', null).executeTakeFirst()
      if (Number(claimed.numUpdatedRows) !== 1) return false
      // D13: the org's KEK leaves the vault before the rows that record it is pending (a crash
      // after termination may have left it); if that fails, nothing is purged and the next run retries.
      await this.keyring.shred(orgId, trx)
      for (const table of tables) await trx.deleteFrom(table as 'decision').where('org_id', '=', orgId).execute()
      await trx.deleteFrom('audit_checkpoint').where('chain_id', '=', orgId).execute()
      await trx.deleteFrom('audit_event').where('chain_id', '=', orgId).execute()
      await trx.deleteFrom('org').where('id', '=', orgId).execute()
      await this.audit.append(trx, { chainId: INSTANCE_CHAIN, actorType: 'system', actorId: null, action: 'org_purged', targetType: 'org', targetId: orgId, outcome: 'success', requestId: null })
      return true
    })
  }

  /** Every table with an `org_id` column: those not in KNOWN first, then KNOWN in its order. */
  async #tables(): Promise<string[]> {
    if (!this.#orgTables) {
      const all = await this.db.introspection.getTables()
      const withOrg = all.filter((t) => t.name !== 'org' && t.columns.some((c) => c.name === 'org_id')).map((t) => t.name)
      const known: readonly string[] = KNOWN
      this.#orgTables = [...withOrg.filter((t) => !known.includes(t)).sort(), ...known.filter((t) => withOrg.includes(t))]
    }
    return this.#orgTables
  }
}
