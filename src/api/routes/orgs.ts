import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Kysely, Transaction } from 'kysely'
import { withAudit, type AuditLog } from '../../audit/audit.ts'
import type { Clock } from '../../core/clock.ts'
import { TollgateError } from '../../core/errors.ts'
import { ENVIRONMENTS } from '../../core/model.ts'
import type { SessionStore } from '../../identity/sessions.ts'
import type { Oidc } from '../../identity/oidc.ts'
import { normalizeEmail } from '../../identity/users.ts'
import { COHORT } from '../../policy/document.ts'
import type { KeyStore } from '../../keys/keys.repo.ts'
import { LABEL } from '../../keys/keys.repo.ts'
import type { MailTransport } from '../../mail/mail.ts'
import type { InviteStore } from '../../orgs/invites.ts'
import type { MemberStore } from '../../orgs/members.ts'
import type { OrgStore } from '../../orgs/orgs.repo.ts'
import { managesAllKeys, type Role } from '../../orgs/rbac.ts'
import type { SsoStore } from '../../orgs/sso.ts'
import type { OrgKeyring } from '../../privacy/org-keys.ts'
import type { DB } from '../../storage/schema.ts'
import { ENVIRONMENT, ID, iso, NULLABLE_TIME, object, OK, ORG_PARAMS, ROLE, TIME } from '../schemas.ts'

export interface OrgRouteDeps {
  readonly clock: Clock
  readonly db: Kysely<DB>
  readonly audit: AuditLog
  readonly keyring: OrgKeyring
  readonly orgs: OrgStore
  readonly members: MemberStore
  readonly invites: InviteStore
  readonly sso: SsoStore
  readonly keys: KeyStore
  readonly sessions: SessionStore
  readonly mail: MailTransport
  readonly oidc: Oidc
  readonly origin: string
}

const KEY = object({
  id: ID, environment: ENVIRONMENT, scope: { type: 'string', enum: ['gateway', 'admin'] }, user_id: { type: ['string', 'null'] }, label: { type: ['string', 'null'] },
  state: { type: 'string', enum: ['active', 'expiring', 'revoked', 'expired'] }, created_at: TIME, expires_at: NULLABLE_TIME, revoked_at: NULLABLE_TIME,
  last_used_at: NULLABLE_TIME, replaced_by: { type: ['string', 'null'] },
})
/** Only in the create and rotate responses: the secret, shown once. */
const KEY_WITH_SECRET = object({ key: KEY, secret: { type: 'string' } })
/** A member's team: a cohort id the policy's `cohorts` match (the policy COHORT pattern), or null. */
const TEAM = { type: ['string', 'null'], pattern: COHORT.source, maxLength: 64 } as const
const MEMBER = object({ user_id: ID, email: { type: 'string' }, role: ROLE, team: TEAM, joined_at: TIME })
const INVITE = object({ id: ID, email: { type: 'string' }, role: ROLE, created_at: TIME, expires_at: TIME })
const SSO = object({ issuer: { type: 'string' }, client_id: { type: 'string' }, has_client_secret: { type: 'boolean' }, allowed_domains: { type: 'array', items: { type: 'string' } }, updated_at: TIME })
const AUDIT = object({
  seq: { type: 'integer' }, at: TIME, actor_type: { type: 'string' }, actor_id: { type: ['string', 'null'] }, action: { type: 'string' },
  target_type: { type: ['string', 'null'] }, target_id: { type: ['string', 'null'] }, outcome: { type: 'string' }, request_id: { type: ['string', 'null'] },
  prev_hash: { type: 'string' }, hash: { type: 'string' },
})
const DOMAIN = { type: 'string', pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$', maxLength: 253 } as const

type Access = { orgId: string; role: Role }
const access = (r: FastifyRequest): Access => r.orgAccess!

function keyState(k: { revokedAt: number | null; expiresAt: number | null }, now: number): string {
  if (k.revokedAt !== null && k.revokedAt <= now) return 'revoked'
  if (k.expiresAt !== null) return k.expiresAt <= now ? 'expired' : 'expiring'
  return 'active'
}

export function registerOrgRoutes(app: FastifyInstance, d: OrgRouteDeps): void {
  /** The acting person, named by the org's pseudonym (D13). */
  const actor = async (r: FastifyRequest, orgId: string, db?: Kysely<DB>) => {
    const p = r.principal!
    return { type: p.kind === 'session' ? ('user' as const) : ('api_key' as const), id: await d.keyring.pseudonym(orgId, p.userId, db), requestId: r.id }
  }
  /** `targetId` may be computed from the effect's result (an object the effect created). */
  const audited = <T>(r: FastifyRequest, orgId: string, action: string, targetType: string, targetId: string | null | ((result: NoInfer<T>) => string), fn: (trx: Transaction<DB>) => Promise<T>) =>
    withAudit(d.db, async (trx) => {
      const result = await fn(trx)
      const a = await actor(r, orgId, trx)
      await d.audit.append(trx, { chainId: orgId, actorType: a.type, actorId: a.id, action, targetType, targetId: typeof targetId === 'function' ? targetId(result) : targetId, outcome: 'success', requestId: r.id })
      return result
    })
  const presentKey = (k: Awaited<ReturnType<KeyStore['list']>>[number]) => ({
    id: k.id, environment: k.environment, scope: k.scope, user_id: k.userId, label: k.label, state: keyState(k, d.clock.now()), created_at: iso(k.createdAt),
    expires_at: iso(k.expiresAt), revoked_at: iso(k.revokedAt), last_used_at: iso(k.lastUsedAt), replaced_by: k.replacedBy,
  })

  app.get('/api/orgs', {
    config: { action: 'self' },
    schema: { summary: 'The orgs I belong to.', response: { 200: object({ orgs: { type: 'array', items: object({ id: ID, slug: { type: 'string' }, role: ROLE }) } }) } },
  }, async (request) => {
    const rows = await d.db.selectFrom('membership').innerJoin('org', 'org.id', 'membership.org_id').select(['org.id', 'org.slug', 'membership.role'])
      .where('membership.user_id', '=', request.principal!.userId).where('org.terminated_at', 'is', null).orderBy('org.slug').execute()
    return { orgs: rows.map((r) => ({ id: r.id, slug: r.slug, role: r.role })) }
  })

  app.get('/api/orgs/:org', {
    config: { action: 'org.read' },
    schema: { summary: 'One org.', params: ORG_PARAMS, response: { 200: object({ id: ID, slug: { type: 'string' }, created_at: TIME, my_role: ROLE }) } },
  }, async (request) => {
    const { orgId, role } = access(request)
    const org = await d.orgs.byId(orgId)
    return { id: org!.id, slug: org!.slug, created_at: iso(org!.createdAt), my_role: role }
  })

  app.get('/api/orgs/:org/environments', {
    config: { action: 'environment.list' },
    schema: { summary: 'The org\'s environments (sandbox and production) with their live key counts.', params: ORG_PARAMS, response: { 200: object({ environments: { type: 'array', items: object({ name: ENVIRONMENT, key_prefix: { type: 'string' }, active_keys: { type: 'integer' } }) } }) } },
  }, async (request) => {
    const keys = await d.keys.list({ orgId: access(request).orgId })
    const now = d.clock.now()
    return { environments: ENVIRONMENTS.map((name) => ({ name, key_prefix: name === 'production' ? 'tg_live_' : 'tg_test_', active_keys: keys.filter((k) => k.environment === name && ['active', 'expiring'].includes(keyState(k, now))).length })) }
  })

  // ---- members ----
  app.get('/api/orgs/:org/members', {
    config: { action: 'member.list' },
    schema: { summary: 'Members, their roles and teams.', params: ORG_PARAMS, response: { 200: object({ members: { type: 'array', items: MEMBER } }) } },
  }, async (request) => ({ members: (await d.members.list(access(request).orgId)).map((m) => ({ user_id: m.userId, email: m.email, role: m.role, team: m.team, joined_at: iso(m.joinedAt) })) }))

  const MEMBER_PARAMS = object({ org: ID, user: ID })
  app.patch('/api/orgs/:org/members/:user', {
    config: { action: 'member.role' },
    schema: {
      summary: 'Change a member\'s role and/or team (the last OWNER cannot be demoted; only an OWNER grants or removes OWNER, or changes an OWNER). A team is a cohort id policies match on; null clears it.',
      params: MEMBER_PARAMS, body: { ...object({ role: ROLE, team: TEAM }, []), minProperties: 1 }, response: { 200: OK },
    },
  }, async (request) => {
    const { orgId, role: myRole } = access(request)
    const userId = (request.params as { user: string }).user
    const body = request.body as { role?: Role; team?: string | null }
    const target = await d.keyring.pseudonym(orgId, userId)
    await withAudit(d.db, async (trx) => {
      const current = await d.members.get(trx, orgId, userId)
      if (!current) throw new TollgateError('not_found')
      if ((current === 'OWNER' || body.role === 'OWNER') && myRole !== 'OWNER') throw new TollgateError('forbidden')
      const a = await actor(request, orgId, trx)
      const append = (action: string, targetId: string) => d.audit.append(trx, { chainId: orgId, actorType: a.type, actorId: a.id, action, targetType: 'member', targetId, outcome: 'success', requestId: request.id })
      if (body.role !== undefined) {
        await d.members.setRole(trx, orgId, userId, body.role)
        await append('privilege_permissions_changed', target)
      }
      if (body.team !== undefined) {
        await d.members.setTeam(trx, orgId, userId, body.team)
        // The team is a label (a cohort id), never PII: `-` (not a cohort id) records a cleared team.
        await append('member_team_changed', `${target}:${body.team ?? '-'}`)
      }
    })
    // The person's sessions get new tokens on their next request (AUTH-5: rotation on privilege change).
    if (body.role !== undefined) await d.sessions.rotateOnNextUse(userId)
    return { ok: true }
  })

  app.delete('/api/orgs/:org/members/:user', {
    config: { action: 'member.remove' },
    schema: { summary: 'Remove a member (the last OWNER cannot be removed).', params: MEMBER_PARAMS, response: { 200: OK } },
  }, async (request) => {
    const { orgId, role: myRole } = access(request)
    const userId = (request.params as { user: string }).user
    await audited(request, orgId, 'user_removed_from_org', 'member', await d.keyring.pseudonym(orgId, userId), async (trx) => {
      const current = await d.members.get(trx, orgId, userId)
      if (!current) throw new TollgateError('not_found')
      if (current === 'OWNER' && myRole !== 'OWNER') throw new TollgateError('forbidden')
      await d.members.remove(trx, orgId, userId)
      // Their keys in this org stop working now.
      await trx.updateTable('api_key').set({ revoked_at: d.clock.now() }).where('org_id', '=', orgId).where('user_id', '=', userId).where('revoked_at', 'is', null).execute()
    })
    await d.sessions.rotateOnNextUse(userId)
    return { ok: true }
  })

  app.post('/api/orgs/:org/members/:user/end-sessions', {
    config: { action: 'member.sessions.end' },
    schema: { summary: 'End every session of a member.', params: MEMBER_PARAMS, body: { type: 'object', additionalProperties: false, properties: {} }, response: { 200: object({ ended: { type: 'integer' } }) } },
  }, async (request) => {
    const { orgId } = access(request)
    const userId = (request.params as { user: string }).user
    if (!(await d.members.get(d.db, orgId, userId))) throw new TollgateError('not_found')
    const ended = await audited(request, orgId, 'session_ended_by_admin', 'member', await d.keyring.pseudonym(orgId, userId), (trx) => d.sessions.endAll(userId, 'ended_by_admin', undefined, trx))
    return { ended }
  })

  // ---- invites ----
  app.get('/api/orgs/:org/invites', {
    config: { action: 'invite.list' },
    schema: { summary: 'Pending invites.', params: ORG_PARAMS, response: { 200: object({ invites: { type: 'array', items: INVITE } }) } },
  }, async (request) => ({ invites: (await d.invites.pending(access(request).orgId)).map((i) => ({ id: i.id, email: i.email, role: i.role, created_at: iso(i.createdAt), expires_at: iso(i.expiresAt) })) }))

  app.post('/api/orgs/:org/invites', {
    config: { action: 'member.invite' },
    schema: { summary: 'Invite someone by email: a single-use link valid 7 days, sent by the mail transport.', params: ORG_PARAMS, body: object({ email: { type: 'string', maxLength: 320 }, role: ROLE }), response: { 201: INVITE } },
  }, async (request, reply) => {
    const { orgId, role: myRole } = access(request)
    const body = request.body as { email: string; role: Role }
    const email = normalizeEmail(body.email)
    if (!email) throw new TollgateError('invalid_request', undefined, 'email')
    if (body.role === 'OWNER' && myRole !== 'OWNER') throw new TollgateError('forbidden')
    const org = await d.orgs.byId(orgId)
    const created = await audited(request, orgId, 'user_invited', 'invite', (c) => c.id, (trx: Transaction<DB>) => d.invites.create(trx, orgId, email, body.role, request.principal!.userId))
    // The token travels in the URL fragment: never sent to a server, never in an access log.
    await d.mail.send({
      to: email,
      subject: `You are invited to ${org!.slug} on Tollgate`,
      text: `You have been invited to join ${org!.slug} on Tollgate as ${body.role}.\n\nAccept within 7 days: ${d.origin}/invite#token=${created.token}\n\nIf you did not expect this, ignore this message.`,
    })
    const invite = (await d.invites.pending(orgId)).find((i) => i.id === created.id)!
    return reply.code(201).send({ id: invite.id, email: invite.email, role: invite.role, created_at: iso(invite.createdAt), expires_at: iso(invite.expiresAt) })
  })

  app.delete('/api/orgs/:org/invites/:id', {
    config: { action: 'invite.revoke' },
    schema: { summary: 'Revoke a pending invite.', params: object({ org: ID, id: ID }), response: { 200: OK } },
  }, async (request) => {
    const { orgId } = access(request)
    const id = (request.params as { id: string }).id
    await audited(request, orgId, 'invite_revoked', 'invite', id, async (trx) => {
      if (!(await d.invites.revoke(trx, orgId, id))) throw new TollgateError('not_found')
    })
    return { ok: true }
  })

  // ---- SSO ----
  app.get('/api/orgs/:org/sso', {
    config: { action: 'sso.read' },
    schema: { summary: 'The org\'s OpenID Connect SSO settings (the client secret is never returned).', params: ORG_PARAMS, response: { 200: object({ sso: { anyOf: [SSO, { type: 'null' }] }, sign_in_url: { type: 'string' } }) } },
  }, async (request) => {
    const { orgId } = access(request)
    const view = await d.sso.view(orgId)
    const org = await d.orgs.byId(orgId)
    return {
      sso: view ? { issuer: view.issuer, client_id: view.clientId, has_client_secret: view.hasClientSecret, allowed_domains: [...view.allowedDomains], updated_at: iso(view.updatedAt) } : null,
      sign_in_url: `${d.origin}/auth/sso/${org!.slug}`,
    }
  })

  app.put('/api/orgs/:org/sso', {
    config: { action: 'sso.write' },
    schema: {
      summary: 'Set the org\'s OpenID Connect SSO: issuer (discovery), client id and secret, allowed email domains.',
      params: ORG_PARAMS,
      body: object({ issuer: { type: 'string', maxLength: 2048 }, client_id: { type: 'string', minLength: 1, maxLength: 512 }, client_secret: { type: 'string', minLength: 1, maxLength: 2048 }, allowed_domains: { type: 'array', items: DOMAIN, minItems: 1, maxItems: 50 } }, ['issuer', 'client_id', 'allowed_domains']),
      response: { 200: OK },
    },
  }, async (request) => {
    const { orgId } = access(request)
    const b = request.body as { issuer: string; client_id: string; client_secret?: string; allowed_domains: string[] }
    let issuer: URL
    try {
      issuer = new URL(b.issuer)
    } catch {
      throw new TollgateError('invalid_request', undefined, 'issuer')
    }
    if (issuer.protocol !== 'https:' && !(issuer.protocol === 'http:' && /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(issuer.hostname))) throw new TollgateError('invalid_request', undefined, 'issuer')
    await audited(request, orgId, 'sso_config_changed', 'sso', orgId, (trx) => d.sso.put(trx, orgId, { issuer: issuer.toString().replace(/\/$/, ''), clientId: b.client_id, clientSecret: b.client_secret, allowedDomains: b.allowed_domains }))
    return { ok: true }
  })

  app.delete('/api/orgs/:org/sso', {
    config: { action: 'sso.write' },
    schema: { summary: 'Turn SSO off for the org.', params: ORG_PARAMS, response: { 200: OK } },
  }, async (request) => {
    const { orgId } = access(request)
    await audited(request, orgId, 'sso_config_removed', 'sso', orgId, async (trx) => {
      if (!(await d.sso.remove(trx, orgId))) throw new TollgateError('not_found')
    })
    return { ok: true }
  })

  // ---- keys ----
  const KEY_QUERY = { type: 'object', additionalProperties: false, properties: { environment: ENVIRONMENT } } as const
  app.get('/api/orgs/:org/keys', {
    config: { action: 'key.list' },
    schema: { summary: 'API keys (metadata only, never secrets). MEMBERs see their own.', params: ORG_PARAMS, querystring: KEY_QUERY, response: { 200: object({ keys: { type: 'array', items: KEY } }) } },
  }, async (request) => {
    const { orgId, role } = access(request)
    const env = (request.query as { environment?: 'sandbox' | 'production' }).environment
    const all = await d.keys.list({ orgId, ...(env ? { environment: env } : {}) })
    const visible = role === 'MEMBER' ? all.filter((k) => k.userId === request.principal!.userId) : all
    return { keys: visible.map(presentKey) }
  })

  app.post('/api/orgs/:org/keys', {
    config: { action: 'key.create' },
    schema: {
      summary: 'Create a key; its secret is in this response only. ADMINs may create keys for any member; admin-scope keys reach /api/ as their member.',
      params: ORG_PARAMS,
      body: object({ environment: ENVIRONMENT, label: { type: 'string', pattern: LABEL.source }, user_id: ID, scope: { type: 'string', enum: ['gateway', 'admin'] } }, ['environment']),
      response: { 201: KEY_WITH_SECRET },
    },
  }, async (request, reply) => {
    const { orgId, role } = access(request)
    const b = request.body as { environment: 'sandbox' | 'production'; label?: string; user_id?: string; scope?: 'gateway' | 'admin' }
    const me = request.principal!.userId
    const owner = b.user_id ?? me
    if (owner !== me && !managesAllKeys(role)) throw new TollgateError('forbidden')
    if (!(await d.members.get(d.db, orgId, owner))) throw new TollgateError('invalid_request', undefined, 'user_id')
    const a = await actor(request, orgId)
    const { info, key } = await d.keys.create({ orgId, environment: b.environment, userId: owner, label: b.label ?? null, scope: b.scope ?? 'gateway', actor: a })
    return reply.code(201).send({ key: presentKey(info), secret: key })
  })

  const KEY_PARAMS = object({ org: ID, id: ID })
  const ownsKey = async (request: FastifyRequest, orgId: string, role: Role, id: string) => {
    const k = (await d.keys.list({ orgId })).find((x) => x.id === id)
    if (!k) throw new TollgateError('not_found')
    if (!managesAllKeys(role) && k.userId !== request.principal!.userId) throw new TollgateError('not_found')
  }

  app.post('/api/orgs/:org/keys/:id/rotate', {
    config: { action: 'key.rotate' },
    schema: { summary: 'Rotate: a new key now; the old one keeps working for grace_seconds (0 = revoked at once).', params: KEY_PARAMS, body: object({ grace_seconds: { type: 'integer', minimum: 0, maximum: 30 * 24 * 3600 } }), response: { 201: KEY_WITH_SECRET } },
  }, async (request, reply) => {
    const { orgId, role } = access(request)
    const id = (request.params as { id: string }).id
    await ownsKey(request, orgId, role, id)
    const rotated = await d.keys.rotate({ orgId, id, graceSeconds: (request.body as { grace_seconds: number }).grace_seconds, actor: await actor(request, orgId) })
    if (!rotated) throw new TollgateError('not_found')
    return reply.code(201).send({ key: presentKey(rotated.info), secret: rotated.key })
  })

  app.delete('/api/orgs/:org/keys/:id', {
    config: { action: 'key.revoke' },
    schema: { summary: 'Revoke a key at once, on every instance.', params: KEY_PARAMS, response: { 200: OK } },
  }, async (request) => {
    const { orgId, role } = access(request)
    const id = (request.params as { id: string }).id
    await ownsKey(request, orgId, role, id)
    if (!(await d.keys.revoke({ id, orgId, actor: await actor(request, orgId) }))) throw new TollgateError('not_found')
    return { ok: true }
  })

  // ---- audit ----
  app.get('/api/orgs/:org/audit', {
    config: { action: 'audit.read' },
    schema: {
      summary: 'The org\'s audit log, oldest first, after a sequence number.',
      params: ORG_PARAMS,
      querystring: { type: 'object', additionalProperties: false, properties: { after: { type: 'string', pattern: '^[0-9]{1,15}$' }, limit: { type: 'string', pattern: '^[0-9]{1,4}$' } } },
      response: { 200: object({ entries: { type: 'array', items: AUDIT } }) },
    },
  }, async (request) => {
    const { orgId } = access(request)
    const q = request.query as { after?: string; limit?: string }
    const limit = Math.min(Math.max(Number(q.limit ?? 100), 1), 1000)
    const rows = await d.db.selectFrom('audit_event').selectAll().where('chain_id', '=', orgId).where('seq', '>', Number(q.after ?? 0)).orderBy('seq').limit(limit).execute()
    return { entries: rows.map((r) => ({ seq: r.seq, at: iso(r.at), actor_type: r.actor_type, actor_id: r.actor_id, action: r.action, target_type: r.target_type, target_id: r.target_id, outcome: r.outcome, request_id: r.request_id, prev_hash: r.prev_hash, hash: r.hash })) }
  })
}
