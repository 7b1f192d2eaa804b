import type { Kysely } from 'kysely'
import type { Clock } from '../core/clock.ts'
import { TollgateError } from '../core/errors.ts'
import type { DB } from '../storage/schema.ts'
import type { Role } from './rbac.ts'

export interface Member {
  readonly userId: string
  readonly email: string
  readonly role: Role
  /** A cohort id the policy's `cohorts` match, or null. */
  readonly team: string | null
  readonly joinedAt: number
}

/** Org membership (RBAC-2). The last OWNER can be neither demoted nor removed. */
export class MemberStore {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
  ) {}

  async list(orgId: string): Promise<Member[]> {
    const rows = await this.db.selectFrom('membership').innerJoin('user', 'user.id', 'membership.user_id')
      .select(['user.id', 'user.email', 'membership.role', 'membership.team', 'membership.created_at']).where('membership.org_id', '=', orgId)
      .orderBy('membership.created_at').orderBy('user.id').execute()
    return rows.map((r) => ({ userId: r.id, email: r.email, role: r.role as Role, team: r.team, joinedAt: r.created_at }))
  }

  async get(trx: Kysely<DB>, orgId: string, userId: string): Promise<Role | undefined> {
    const row = await trx.selectFrom('membership').select('role').where('org_id', '=', orgId).where('user_id', '=', userId).executeTakeFirst()
    return row?.role as Role | undefined
  }

  async add(trx: Kysely<DB>, orgId: string, userId: string, role: Role): Promise<boolean> {
    const existing = await this.get(trx, orgId, userId)
    if (existing) return false
    await trx.insertInto('membership').values({ org_id: orgId, user_id: userId, role, created_at: this.clock.now() }).execute()
    return true
  }

  /** Changes a role inside the caller's transaction; refuses to leave the org without an OWNER. */
  async setRole(trx: Kysely<DB>, orgId: string, userId: string, role: Role): Promise<boolean> {
    const current = await this.get(trx, orgId, userId)
    if (!current) return false
    if (current === 'OWNER' && role !== 'OWNER') await this.#keepAnOwner(trx, orgId)
    await trx.updateTable('membership').set({ role }).where('org_id', '=', orgId).where('user_id', '=', userId).execute()
    return true
  }

  /** Sets or clears a member's team inside the caller's transaction (the gateway sees it within 30 s). */
  async setTeam(trx: Kysely<DB>, orgId: string, userId: string, team: string | null): Promise<void> {
    await trx.updateTable('membership').set({ team }).where('org_id', '=', orgId).where('user_id', '=', userId).execute()
  }

  async remove(trx: Kysely<DB>, orgId: string, userId: string): Promise<boolean> {
    const current = await this.get(trx, orgId, userId)
    if (!current) return false
    if (current === 'OWNER') await this.#keepAnOwner(trx, orgId)
    await trx.deleteFrom('membership').where('org_id', '=', orgId).where('user_id', '=', userId).execute()
    return true
  }

  async #keepAnOwner(trx: Kysely<DB>, orgId: string): Promise<void> {
    // Lock the org's OWNER rows first (a no-op UPDATE: row locks in PostgreSQL, the write lock in
    // SQLite), so two concurrent demotions of two OWNERs serialize: the second one waits, then
    // counts what the first committed. A plain count under READ COMMITTED let both see two
    // OWNERs and both commit, leaving none.
    await trx.updateTable('membership').set((eb) => ({ role: eb.ref('role') })).where('org_id', '=', orgId).where('role', '=', 'OWNER').execute()
    const { n } = await trx.selectFrom('membership').select((eb) => eb.fn.countAll<number>().as('n'))
      .where('org_id', '=', orgId).where('role', '=', 'OWNER').executeTakeFirstOrThrow()
    if (Number(n) <= 1) throw new TollgateError('last_owner')
  }
}
