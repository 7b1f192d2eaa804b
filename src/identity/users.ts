import type { Kysely } from 'kysely'
import type { Clock } from '../core/clock.ts'
import { hmacSha256 } from '../core/crypto.ts'
import { newId } from '../core/ids.ts'
import type { Role } from '../orgs/rbac.ts'
import type { DB } from '../storage/schema.ts'

export interface User {
  readonly id: string
  readonly email: string
  readonly createdAt: number
  readonly disabledAt: number | null
}

export interface Membership {
  readonly orgId: string
  readonly slug: string
  readonly role: Role
}

export type IdentityProvider = 'google' | 'oidc'

const EMAIL = /^[^\s@<>()[\]\\,;:"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$/

/** A syntactically plausible email, lower-cased; undefined otherwise. */
export function normalizeEmail(v: unknown): string | undefined {
  if (typeof v !== 'string' || v.length > 320) return undefined
  const e = v.trim().toLowerCase()
  return EMAIL.test(e) ? e : undefined
}

/** D3: a sign-in identity is HMAC(instance key, issuer ‖ sub) — never the email, never the raw sub. */
export function subjectHash(identityKey: Buffer, issuer: string, sub: string): string {
  return hmacSha256(identityKey, `${issuer}\0${sub}`).toString('base64url')
}

/** People (email is the only PII, DATA-1), their sign-in identities and their memberships. */
export class UserStore {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
  ) {}

  async byId(id: string): Promise<User | undefined> {
    const row = await this.db.selectFrom('user').selectAll().where('id', '=', id).executeTakeFirst()
    return row && present(row)
  }

  async bySubject(subjectHash: string): Promise<User | undefined> {
    const row = await this.db.selectFrom('user_identity').innerJoin('user', 'user.id', 'user_identity.user_id')
      .select(['user.id', 'user.email', 'user.created_at', 'user.disabled_at']).where('user_identity.subject_hash', '=', subjectHash).executeTakeFirst()
    return row && present(row)
  }

  /** Creates a user inside the caller's transaction. */
  async create(trx: Kysely<DB>, email: string): Promise<User> {
    const row = { id: newId(), email, created_at: this.clock.now(), disabled_at: null }
    await trx.insertInto('user').values(row).execute()
    return present(row)
  }

  async link(trx: Kysely<DB>, userId: string, subject: string, provider: IdentityProvider, orgId: string | null): Promise<void> {
    await trx.insertInto('user_identity').values({ subject_hash: subject, user_id: userId, provider, org_id: orgId, created_at: this.clock.now() }).execute()
  }

  /** The IdP reports a new email for the same subject: the account follows (T55). */
  async setEmail(userId: string, email: string): Promise<void> {
    await this.db.updateTable('user').set({ email }).where('id', '=', userId).execute()
  }

  async memberships(userId: string): Promise<Membership[]> {
    const rows = await this.db.selectFrom('membership').innerJoin('org', 'org.id', 'membership.org_id')
      .select(['org.id', 'org.slug', 'membership.role']).where('membership.user_id', '=', userId).where('org.terminated_at', 'is', null)
      .orderBy('org.slug').execute()
    return rows.map((r) => ({ orgId: r.id, slug: r.slug, role: r.role as Role }))
  }

  async role(userId: string, orgId: string): Promise<Role | undefined> {
    return (await this.member(userId, orgId))?.role
  }

  /** A live membership's role and team (a cohort id the policy may match on), if any. */
  async member(userId: string, orgId: string): Promise<{ role: Role; team: string | null } | undefined> {
    const row = await this.db.selectFrom('membership').innerJoin('org', 'org.id', 'membership.org_id').select(['membership.role', 'membership.team'])
      .where('membership.user_id', '=', userId).where('membership.org_id', '=', orgId).where('org.terminated_at', 'is', null).executeTakeFirst()
    return row && { role: row.role as Role, team: row.team }
  }
}

function present(row: DB['user']): User {
  return { id: row.id, email: row.email, createdAt: row.created_at, disabledAt: row.disabled_at }
}
