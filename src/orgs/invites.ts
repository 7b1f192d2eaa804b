import { randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { Clock } from '../core/clock.ts'
import { sha256Hex } from '../core/crypto.ts'
import { newId } from '../core/ids.ts'
import type { DB } from '../storage/schema.ts'
import type { Role } from './rbac.ts'

/** Invites (RBAC-2): single-use, 7 days, 256-bit token of which only the hash is stored. */
export const INVITE_TTL_MS = 7 * 24 * 3600_000

export interface InviteView {
  readonly id: string
  readonly email: string
  readonly role: Role
  readonly createdAt: number
  readonly expiresAt: number
}

export interface OpenInvite {
  readonly id: string
  readonly orgId: string
  readonly email: string
  readonly role: Role
}

export class InviteStore {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
  ) {}

  async create(trx: Kysely<DB>, orgId: string, email: string, role: Role, createdBy: string | null): Promise<{ id: string; token: string }> {
    const token = randomBytes(32).toString('base64url')
    const now = this.clock.now()
    const id = newId()
    await trx.insertInto('invite').values({
      id, org_id: orgId, email, role, token_hash: sha256Hex(token), created_by: createdBy, created_at: now, expires_at: now + INVITE_TTL_MS, accepted_at: null, revoked_at: null,
    }).execute()
    return { id, token }
  }

  /** Pending invites of an org (not accepted, revoked or expired). */
  async pending(orgId: string): Promise<InviteView[]> {
    const rows = await this.db.selectFrom('invite').selectAll().where('org_id', '=', orgId).where('accepted_at', 'is', null)
      .where('revoked_at', 'is', null).where('expires_at', '>', this.clock.now()).orderBy('created_at').execute()
    return rows.map((r) => ({ id: r.id, email: r.email, role: r.role as Role, createdAt: r.created_at, expiresAt: r.expires_at }))
  }

  /** The open invite a token names, without using it. */
  async open(token: string): Promise<OpenInvite | undefined> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return undefined
    const row = await this.db.selectFrom('invite').selectAll().where('token_hash', '=', sha256Hex(token)).where('accepted_at', 'is', null)
      .where('revoked_at', 'is', null).where('expires_at', '>', this.clock.now()).executeTakeFirst()
    return row && { id: row.id, orgId: row.org_id, email: row.email, role: row.role as Role }
  }

  /** Marks an invite used inside the caller's transaction; false when someone used it first. */
  async accept(trx: Kysely<DB>, id: string): Promise<boolean> {
    const r = await trx.updateTable('invite').set({ accepted_at: this.clock.now() }).where('id', '=', id).where('accepted_at', 'is', null)
      .where('revoked_at', 'is', null).where('expires_at', '>', this.clock.now()).executeTakeFirst()
    return Number(r.numUpdatedRows) === 1
  }

  async revoke(trx: Kysely<DB>, orgId: string, id: string): Promise<boolean> {
    const r = await trx.updateTable('invite').set({ revoked_at: this.clock.now() }).where('id', '=', id).where('org_id', '=', orgId)
      .where('accepted_at', 'is', null).where('revoked_at', 'is', null).executeTakeFirst()
    return Number(r.numUpdatedRows) === 1
  }

  /** Forgets invite emails once they are no longer needed (accepted, revoked or expired). */
  async purgeClosed(): Promise<number> {
    const now = this.clock.now()
    const r = await this.db.deleteFrom('invite').where((eb) => eb.or([eb('accepted_at', 'is not', null), eb('revoked_at', 'is not', null), eb('expires_at', '<=', now)])).executeTakeFirst()
    return Number(r.numDeletedRows)
  }
}
