import type { Kysely } from 'kysely'
import { withAudit, type AuditLog } from '../audit/audit.ts'
import type { Clock } from '../core/clock.ts'
import { newId } from '../core/ids.ts'
import type { Actor } from '../keys/keys.repo.ts'
import type { OrgKeyring } from '../privacy/org-keys.ts'
import type { DB } from '../storage/schema.ts'

export const SLUG = /^[a-z0-9][a-z0-9-]{1,62}$/

export interface Org {
  readonly id: string
  readonly slug: string
  readonly createdAt: number
  readonly terminatedAt: number | null
}

export class OrgStore {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly keyring: OrgKeyring,
  ) {}

  /** Creates an org with its keys; audited in the org's own chain. Undefined when the slug is taken. */
  async create(slug: string, actor: Actor): Promise<Org | undefined> {
    if (!SLUG.test(slug)) throw new Error('invalid org slug')
    if (await this.bySlug(slug)) return undefined
    return withAudit(this.db, (trx) => this.createIn(trx, slug, actor))
  }

  /** Creates an org inside the caller's transaction (with its keys and its audit entry). */
  async createIn(trx: Kysely<DB>, slug: string, actor: Actor): Promise<Org> {
    if (!SLUG.test(slug)) throw new Error('invalid org slug')
    const org = { id: newId(), slug, created_at: this.clock.now(), terminated_at: null }
    await trx.insertInto('org').values(org).execute()
    await this.keyring.createFor(trx, org.id)
    await this.audit.append(trx, { chainId: org.id, actorType: actor.type, actorId: actor.id, action: 'org_created', targetType: 'org', targetId: org.id, outcome: 'success', requestId: actor.requestId ?? null })
    return present(org)
  }

  async bySlug(slug: string): Promise<Org | undefined> {
    const row = await this.db.selectFrom('org').selectAll().where('slug', '=', slug).executeTakeFirst()
    return row && present(row)
  }

  async byId(id: string): Promise<Org | undefined> {
    const row = await this.db.selectFrom('org').selectAll().where('id', '=', id).executeTakeFirst()
    return row && present(row)
  }

  async list(): Promise<Org[]> {
    return (await this.db.selectFrom('org').selectAll().orderBy('created_at').orderBy('slug').execute()).map(present)
  }
}

function present(row: DB['org']): Org {
  return { id: row.id, slug: row.slug, createdAt: row.created_at, terminatedAt: row.terminated_at }
}
