import type { Kysely } from 'kysely'
import { withAudit, type AuditLog } from '../audit/audit.ts'
import type { Actor } from '../keys/keys.repo.ts'
import type { MemberStore } from '../orgs/members.ts'
import type { OrgStore } from '../orgs/orgs.repo.ts'
import type { OrgKeyring } from '../privacy/org-keys.ts'
import type { DB } from '../storage/schema.ts'
import type { LoginLinks } from './login-links.ts'
import { normalizeEmail, type UserStore } from './users.ts'

export interface BootstrapDeps {
  readonly db: Kysely<DB>
  readonly audit: AuditLog
  readonly keyring: OrgKeyring
  readonly orgs: OrgStore
  readonly users: UserStore
  readonly members: MemberStore
  readonly links: LoginLinks
  readonly origin: string
}

/** The single-use sign-in URL; the token rides in the fragment, which browsers never send to a server. */
export function linkUrl(origin: string, token: string): string {
  return `${origin}/auth/link#token=${token}`
}

/**
 * AUTH-7: creates an org, its first OWNER (email only) and a single-use sign-in link valid 15
 * minutes, in one audited transaction. Returns undefined when the slug is taken.
 */
export async function bootstrapOrg(d: BootstrapDeps, slug: string, emailIn: string, actor: Actor): Promise<{ orgId: string; userId: string; link: string } | undefined> {
  const email = normalizeEmail(emailIn)
  if (!email) throw new Error('invalid email')
  if (await d.orgs.bySlug(slug)) return undefined
  return withAudit(d.db, async (trx) => {
    const org = await d.orgs.createIn(trx, slug, actor)
    const user = await d.users.create(trx, email)
    await d.members.add(trx, org.id, user.id, 'OWNER')
    const token = await d.links.create(trx, user.id)
    await d.audit.append(trx, { chainId: org.id, actorType: actor.type, actorId: actor.id, action: 'user_created', targetType: 'member', targetId: await d.keyring.pseudonym(org.id, user.id, trx), outcome: 'success', requestId: actor.requestId ?? null })
    await d.audit.append(trx, { chainId: org.id, actorType: actor.type, actorId: actor.id, action: 'authn_login_link_created', targetType: 'member', targetId: await d.keyring.pseudonym(org.id, user.id, trx), outcome: 'success', requestId: actor.requestId ?? null })
    return { orgId: org.id, userId: user.id, link: linkUrl(d.origin, token) }
  })
}

/** A new single-use sign-in link for an existing person (operator recovery). */
export async function issueLoginLink(d: BootstrapDeps, emailIn: string, actor: Actor): Promise<string | undefined> {
  const email = normalizeEmail(emailIn)
  if (!email) return undefined
  const user = await d.db.selectFrom('user').select(['id']).where('email', '=', email).where('disabled_at', 'is', null).orderBy('created_at').executeTakeFirst()
  if (!user) return undefined
  return withAudit(d.db, async (trx) => {
    const token = await d.links.create(trx, user.id)
    const orgs = await trx.selectFrom('membership').select('org_id').where('user_id', '=', user.id).execute()
    for (const { org_id } of orgs) {
      await d.audit.append(trx, { chainId: org_id, actorType: actor.type, actorId: actor.id, action: 'authn_login_link_created', targetType: 'member', targetId: await d.keyring.pseudonym(org_id, user.id, trx), outcome: 'success', requestId: actor.requestId ?? null })
    }
    return linkUrl(d.origin, token)
  })
}

/** POST /ops/seed: demo orgs and people for a staging instance (idempotent; no keys, no secrets). Audited under the operator call's request id. */
export async function seedDemo(d: BootstrapDeps, requestId: string | null = null): Promise<{ orgs: number; users: number }> {
  let orgs = 0
  let users = 0
  for (const slug of ['demo-acme', 'demo-globex']) {
    const made = await bootstrapOrg(d, slug, `owner@${slug}.example`, { type: 'operator', id: null, ...(requestId ? { requestId } : {}) })
    if (!made) continue
    orgs++
    users++
    await withAudit(d.db, async (trx) => {
      for (const [local, role] of [['admin', 'ADMIN'], ['analyst', 'ANALYST'], ['member', 'MEMBER']] as const) {
        const u = await d.users.create(trx, `${local}@${slug}.example`)
        await d.members.add(trx, made.orgId, u.id, role)
        await d.audit.append(trx, { chainId: made.orgId, actorType: 'operator', actorId: null, action: 'user_created', targetType: 'member', targetId: await d.keyring.pseudonym(made.orgId, u.id, trx), outcome: 'success', requestId })
        users++
      }
    })
  }
  return { orgs, users }
}
