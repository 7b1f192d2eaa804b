import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Kysely } from 'kysely'
import { withAudit, type AuditLog } from '../../audit/audit.ts'
import type { AlertWebhooks } from '../../analytics/alerts.ts'
import { webhookUrlOk } from '../../analytics/alerts.ts'
import { DIMENSIONS, type Analytics, type Dimension } from '../../analytics/analytics.ts'
import { HIDDEN, SCOPES } from '../../analytics/cube.ts'
import { DEFAULT_PERIODS, GRANULARITIES, MAX_PERIODS, type Granularity } from '../../analytics/periods.ts'
import type { Clock } from '../../core/clock.ts'
import { TollgateError } from '../../core/errors.ts'
import type { OrgKeyring } from '../../privacy/org-keys.ts'
import type { DB } from '../../storage/schema.ts'
import { iso, object, OK, ORG_PARAMS, TIME } from '../schemas.ts'

export interface AnalyticsRouteDeps {
  readonly clock: Clock
  readonly db: Kysely<DB>
  readonly audit: AuditLog
  readonly keyring: OrgKeyring
  readonly analytics: Analytics
  readonly alertWebhooks: AlertWebhooks
}

/** A published figure: a number, or "<5" when fewer than 5 distinct people are behind it (D10). */
const FIGURE = { anyOf: [{ type: 'number' }, { type: 'string', enum: [HIDDEN] }] } as const
const SCOPE = { type: 'string', enum: SCOPES } as const
const COHORT = { granularity: { type: 'string', enum: GRANULARITIES }, periods: { type: 'string', pattern: '^[1-9][0-9]?$' } } as const
const QUERY = { type: 'object', additionalProperties: false, properties: COHORT } as const
const period = (scope: Record<string, unknown>, optional: Record<string, unknown> = {}) =>
  object({ start: TIME, end: TIME, scopes: { type: 'array', items: object({ environment: SCOPE, ...scope, ...optional }, ['environment', ...Object.keys(scope)]) } })
const HEAD = { granularity: { type: 'string', enum: GRANULARITIES }, k: { type: 'integer' } }
const WEBHOOK = object({ url: { type: 'string' }, created_at: TIME, updated_at: TIME })

type Access = { orgId: string }
const access = (r: FastifyRequest): Access => r.orgAccess!

/** The fixed cohort a request chose: a granularity and how many periods back (bounded). */
function cohort(r: FastifyRequest): { granularity: Granularity; periods: number } {
  const q = r.query as { granularity?: Granularity; periods?: string }
  const granularity = q.granularity ?? 'week'
  const periods = q.periods === undefined ? DEFAULT_PERIODS[granularity] : Number(q.periods)
  if (periods > MAX_PERIODS[granularity]) throw new TollgateError('invalid_request', undefined, 'querystring.periods')
  return { granularity, periods }
}

/**
 * Cohort analytics (AUDIT-4) under `analytics.read` (OWNER, ADMIN, ANALYST): aggregates only,
 * every figure k-floored (RBAC-3) — the same shape for every role, never a per-person row, an
 * actor, key or request id. The alert webhook under `alerts.read` / `alerts.write` (OWNER, ADMIN):
 * its URL may itself carry a token, so ANALYSTs, who read figures only, do not see it.
 */
export function registerAnalyticsRoutes(app: FastifyInstance, d: AnalyticsRouteDeps): void {
  app.get('/api/orgs/:org/analytics/requests', {
    config: { action: 'analytics.read' },
    schema: {
      summary: 'Requests and distinct people per calendar period (UTC day, week of the month or month), for the org and each environment — with cohort=team, also for each team (the member\'s team when each request was decided; the teams of that month); "<5" below 5 people.',
      params: ORG_PARAMS, querystring: { type: 'object', additionalProperties: false, properties: { ...COHORT, cohort: { type: 'string', enum: ['team'] } } },
      response: { 200: object({ ...HEAD, periods: { type: 'array', items: period({ requests: FIGURE, people: FIGURE }, { team: { type: 'string' } }) } }) },
    },
  }, async (request) => {
    const c = cohort(request)
    const byTeam = (request.query as { cohort?: 'team' }).cohort === 'team'
    const periods = await d.analytics.requests(access(request).orgId, c.granularity, c.periods, d.clock.now(), byTeam)
    return { granularity: c.granularity, k: d.analytics.k, periods: periods.map((p) => ({ ...p, start: iso(p.start), end: iso(p.end) })) }
  })

  app.get('/api/orgs/:org/analytics/decisions', {
    config: { action: 'analytics.read' },
    schema: {
      summary: 'Decisions per outcome (by=outcome, the default), domain, intent or policy rule, per calendar period, for the org and each environment, with totals; "<5" below 5 people.',
      params: ORG_PARAMS, querystring: { type: 'object', additionalProperties: false, properties: { ...COHORT, by: { type: 'string', enum: DIMENSIONS } } },
      response: {
        200: object({
          ...HEAD, by: { type: 'string', enum: DIMENSIONS }, values: { type: 'array', items: { type: 'string' } },
          periods: { type: 'array', items: period({ total: FIGURE, cells: { type: 'array', items: object({ value: { type: 'string' }, requests: FIGURE }) } }) },
        }),
      },
    },
  }, async (request) => {
    const c = cohort(request)
    const by = (request.query as { by?: Dimension }).by ?? 'outcome'
    const r = await d.analytics.breakdown(access(request).orgId, by, c.granularity, c.periods, d.clock.now())
    return { granularity: c.granularity, k: d.analytics.k, by, values: r.values, periods: r.periods.map((p) => ({ ...p, start: iso(p.start), end: iso(p.end) })) }
  })

  app.get('/api/orgs/:org/analytics/challenges', {
    config: { action: 'analytics.read' },
    schema: {
      summary: 'Challenges per calendar period: how many, passed, failed, pass rate and mean reasoning score, for the org and each environment; "<5" below 5 people.',
      params: ORG_PARAMS, querystring: QUERY,
      response: { 200: object({ ...HEAD, periods: { type: 'array', items: period({ challenged: FIGURE, passed: FIGURE, failed: FIGURE, pass_rate: FIGURE, mean_reasoning_score: FIGURE }) } }) },
    },
  }, async (request) => {
    const c = cohort(request)
    const periods = await d.analytics.challenges(access(request).orgId, c.granularity, c.periods, d.clock.now())
    return { granularity: c.granularity, k: d.analytics.k, periods: periods.map((p) => ({ ...p, start: iso(p.start), end: iso(p.end) })) }
  })

  // ---- alert webhook ----
  const audited = (r: FastifyRequest, orgId: string, action: string, fn: (trx: Kysely<DB>) => Promise<unknown>) =>
    withAudit(d.db, async (trx) => {
      await fn(trx)
      const p = r.principal!
      await d.audit.append(trx, {
        chainId: orgId, actorType: p.kind === 'session' ? 'user' : 'api_key', actorId: await d.keyring.pseudonym(orgId, p.userId, trx),
        action, targetType: 'alert_webhook', targetId: orgId, outcome: 'success', requestId: r.id,
      })
    })
  const present = (w: { url: string; createdAt: number; updatedAt: number }) => ({ url: w.url, created_at: iso(w.createdAt), updated_at: iso(w.updatedAt) })

  app.get('/api/orgs/:org/alerts/webhook', {
    config: { action: 'alerts.read' },
    schema: { summary: 'Where anomaly alerts go (the signing secret is never returned).', params: ORG_PARAMS, response: { 200: object({ webhook: { anyOf: [WEBHOOK, { type: 'null' }] } }) } },
  }, async (request) => {
    const w = await d.alertWebhooks.get(access(request).orgId)
    return { webhook: w ? present(w) : null }
  })

  app.put('/api/orgs/:org/alerts/webhook', {
    config: { action: 'alerts.write' },
    schema: {
      summary: 'Set the alert webhook: an https URL (http only to a loopback address). A signing secret is made on first set or with rotate_secret, and shown in this response only.',
      params: ORG_PARAMS,
      body: object({ url: { type: 'string', maxLength: 2048, pattern: '^https?://[^\\s<>"]+$' }, rotate_secret: { type: 'boolean' } }, ['url']),
      response: { 200: object({ webhook: WEBHOOK, secret: { type: ['string', 'null'] } }) },
    },
  }, async (request) => {
    const { orgId } = access(request)
    const b = request.body as { url: string; rotate_secret?: boolean }
    if (!webhookUrlOk(b.url)) throw new TollgateError('invalid_request', undefined, 'body.url')
    let secret: string | undefined
    await audited(request, orgId, 'alert_webhook_set', async (trx) => {
      secret = await d.alertWebhooks.put(trx, orgId, b.url, b.rotate_secret === true)
    })
    const w = await d.alertWebhooks.get(orgId)
    return { webhook: present(w!), secret: secret ?? null }
  })

  app.delete('/api/orgs/:org/alerts/webhook', {
    config: { action: 'alerts.write' },
    schema: { summary: 'Stop sending alerts: the webhook and its secret are deleted.', params: ORG_PARAMS, response: { 200: OK } },
  }, async (request) => {
    const { orgId } = access(request)
    await audited(request, orgId, 'alert_webhook_removed', async (trx) => {
      if (!(await d.alertWebhooks.remove(trx, orgId))) throw new TollgateError('not_found')
    })
    return { ok: true }
  })
}
