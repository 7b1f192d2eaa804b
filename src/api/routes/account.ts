import type { FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import { withAudit, type AuditLog } from '../../audit/audit.ts'
import type { Clock } from '../../core/clock.ts'
import { TollgateError } from '../../core/errors.ts'
import { DECISION_COLUMNS } from '../../decisions/record.ts'
import { auditPerson } from '../../identity/auth-events.ts'
import type { OrgStore } from '../../orgs/orgs.repo.ts'
import type { OrgKeyring } from '../../privacy/org-keys.ts'
import { deleteAccount } from '../../rights/delete-account.ts'
import { exportAccount } from '../../rights/export.ts'
import { terminateOrgIn } from '../../rights/terminate.ts'
import type { DB } from '../../storage/schema.ts'
import { clearedSessionCookie } from '../guard.ts'
import { ID, iso, NULLABLE_TIME, object, ORG_PARAMS, TIME } from '../schemas.ts'

export interface AccountRouteDeps {
  readonly clock: Clock
  readonly db: Kysely<DB>
  readonly audit: AuditLog
  readonly keyring: OrgKeyring
  readonly orgs: OrgStore
  readonly secureCookies: boolean
  /** TOLLGATE_ORG_PURGE_DELAY_S in ms: a terminated org's data is gone by termination + this. */
  readonly orgPurgeDelayMs: number
}

const S = { type: 'string' } as const
const NS = { type: ['string', 'null'] } as const
const LIST = (item: unknown) => ({ type: 'array', items: item })
const SCALAR = { type: ['string', 'number', 'null'] } as const
/** The export's schema (T104: it validates against it); the presenter lets only these fields out. */
const EXPORT = object({
  format: { type: 'string', enum: ['tollgate-account-export/1'] },
  exported_at: TIME,
  user: object({ id: ID, email: S, created_at: TIME, disabled_at: NULLABLE_TIME }),
  memberships: LIST(object({ org_id: ID, org_slug: S, role: S, team: { type: ['string', 'null'] }, since: TIME, pseudonym: S })),
  identities: LIST(object({ provider: S, org_id: NS, created_at: TIME })),
  sessions: LIST(object({ id: ID, kind: S, org_id: NS, created_at: TIME, last_seen_at: TIME, expires_at: TIME, ended_at: NULLABLE_TIME, end_reason: NS, current: { type: 'boolean' } })),
  passkeys: LIST(object({ id: S, transports: NS, backed_up: { type: 'boolean' }, created_at: TIME, last_used_at: NULLABLE_TIME })),
  login_links: LIST(object({ created_at: TIME, expires_at: TIME, used_at: NULLABLE_TIME })),
  api_keys: LIST(object({ id: ID, org_id: ID, environment: S, scope: S, label: NS, created_at: TIME, expires_at: NULLABLE_TIME, last_used_at: NULLABLE_TIME, revoked_at: NULLABLE_TIME, replaced_by: NS })),
  decisions: LIST(object(Object.fromEntries(DECISION_COLUMNS.map((c) => [c, SCALAR])))),
  audit: LIST(object({ org_id: ID, seq: { type: 'integer' }, at: TIME, action: S, target_type: NS, target_id: NS, outcome: S, request_id: NS })),
  artifacts: LIST(object({ id: ID, org_id: ID, created_at: TIME, size_bytes: { type: 'integer' }, temporary: { type: 'boolean' }, expires_at: NULLABLE_TIME, title: NS, content: S })),
  reports: LIST(object({ id: ID, org_id: ID, category: S, decision_id: NS, created_at: TIME, purge_by: TIME })),
})

/**
 * Data rights (RIGHTS-1, RIGHTS-2): a person's export and deletion of their own account (`self`
 * routes that need a fresh step-up), and an OWNER's termination of an org (`org.terminate`).
 */
export function registerAccountRoutes(app: FastifyInstance, d: AccountRouteDeps): void {
  app.get('/api/account/export', {
    config: { action: 'self', stepUp: true },
    schema: { summary: 'Everything stored about me, as a JSON download (needs a fresh step-up; audited). Never a secret, never anyone else\'s data.', response: { 200: EXPORT } },
  }, async (request, reply) => {
    const p = request.principal!
    const data = await exportAccount({ db: d.db, keyring: d.keyring, now: d.clock.now() }, p.userId, p.kind === 'session' ? p.session.id : undefined)
    if (!data) throw new TollgateError('unauthenticated')
    await withAudit(d.db, (trx) => auditPerson(trx, d.audit, d.keyring, { userId: p.userId, action: 'account_exported', outcome: 'success', requestId: request.id, targetType: 'account' }))
    return reply.header('content-disposition', 'attachment; filename="tollgate-account-export.json"').header('cache-control', 'no-store').send(data)
  })

  app.delete('/api/account', {
    config: { action: 'self', stepUp: true },
    schema: { summary: 'Delete my account and personal data now (needs a fresh step-up). Refused (409 account_last_owner) while I am the last OWNER of an org with other members; an org I am the sole member of is terminated with it.' },
  }, async (request, reply) => {
    const p = request.principal!
    const result = await deleteAccount(d, p.userId, request.id)
    if (!result.ok) throw new TollgateError('account_last_owner', { orgs: result.blockedBy.length })
    reply.header('set-cookie', clearedSessionCookie(d.secureCookies))
    reply.header('clear-site-data', '"cookies", "storage"')
    return reply.code(204).send()
  })

  app.delete('/api/orgs/:org', {
    config: { action: 'org.terminate' },
    schema: {
      summary: 'Terminate the org (OWNER, fresh step-up): at once its keys and SSO sessions stop working, its invites and memberships go and its keys are destroyed; the retention job deletes all its data by purge_by. Send its slug as `confirm`.',
      params: ORG_PARAMS,
      body: object({ confirm: { type: 'string', maxLength: 64 } }),
      response: { 200: object({ terminated_at: TIME, purge_by: TIME }) },
    },
  }, async (request) => {
    const { orgId } = request.orgAccess!
    const org = await d.orgs.byId(orgId)
    if (!org) throw new TollgateError('not_found')
    if ((request.body as { confirm: string }).confirm !== org.slug) throw new TollgateError('confirmation_mismatch', undefined, 'body.confirm')
    const at = await withAudit(d.db, (trx) => terminateOrgIn(trx, d, orgId, { userId: request.principal!.userId, requestId: request.id }))
    // D13: the org's KEK leaves the vault now that the termination is committed; a failure here is
    // retried (and logged) by the org_keks_destroyed job — the termination stands either way.
    await d.keyring.shred(orgId).catch(() => undefined)
    return { terminated_at: iso(at), purge_by: iso(at + d.orgPurgeDelayMs) }
  })
}
