import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Kysely } from 'kysely'
import { ArtifactStore, type ArtifactInfo } from '../../artifacts/artifacts.ts'
import { REPORT_OUTCOMES, ReportStore, type ReportInfo, type ReportOutcome } from '../../artifacts/reports.ts'
import type { AuditLog } from '../../audit/audit.ts'
import { SAFETY_CODES, type SafetyCode } from '../../classify/facts.ts'
import type { Clock } from '../../core/clock.ts'
import { TollgateError } from '../../core/errors.ts'
import type { Actor } from '../../keys/keys.repo.ts'
import type { OrgKeyring } from '../../privacy/org-keys.ts'
import type { DB } from '../../storage/schema.ts'
import { ID, iso, NULLABLE_TIME, object, OK, ORG_PARAMS, TIME } from '../schemas.ts'

export interface ArtifactRouteDeps {
  readonly clock: Clock
  readonly db: Kysely<DB>
  readonly audit: AuditLog
  readonly keyring: OrgKeyring
}

const PARAMS = object({ org: ID, id: ID })
const CATEGORY = { type: 'string', enum: SAFETY_CODES } as const
/** Text bounds are in UTF-8 bytes, checked by the stores (64 KiB artifacts, 16 KiB reports: 413 text_too_large above). */
const TEXT = { type: 'string', minLength: 1 } as const
const ARTIFACT_FIELDS = { id: ID, created_at: TIME, size_bytes: { type: 'integer' }, temporary: { type: 'boolean' }, expires_at: NULLABLE_TIME }
const ARTIFACT = object(ARTIFACT_FIELDS)
const REPORT_FIELDS = { id: ID, category: CATEGORY, decision_id: { type: ['string', 'null'] }, created_at: TIME, purge_by: TIME }
const REPORT = object(REPORT_FIELDS)

const presentArtifact = (a: ArtifactInfo) => ({ id: a.id, created_at: iso(a.createdAt), size_bytes: a.sizeBytes, temporary: a.temporary, expires_at: iso(a.expiresAt) })
const presentReport = (r: ReportInfo) => ({ id: r.id, category: r.category, decision_id: r.decisionId, created_at: iso(r.createdAt), purge_by: iso(r.purgeBy) })

/**
 * What a person explicitly chooses to store, and nothing else (TRANSIT-1 holds everywhere else):
 * - RIGHTS-3 workspace artifacts, under `artifact.read` / `artifact.write` (every role), in orgs
 *   whose OWNER turned the workspace on: saved, listed, read and deleted only by their owner —
 *   another person's artifact is 404 for everyone, OWNERs included;
 * - GW-8 reports of harmful output, under `report.create` (every role; always available, a safety
 *   channel) and `report.review` (OWNER, ADMIN): the queue shows the reporter only by pseudonym.
 * Responses to writes carry metadata only, so an idempotent replay (LIMIT-2) stores no text.
 */
export function registerArtifactRoutes(app: FastifyInstance, d: ArtifactRouteDeps): void {
  const artifacts = new ArtifactStore(d.db, d.clock, d.audit, d.keyring)
  const reports = new ReportStore(d.db, d.clock, d.audit, d.keyring)
  const orgOf = (r: FastifyRequest) => r.orgAccess!.orgId
  const idOf = (r: FastifyRequest) => (r.params as { id: string }).id
  /** The caller as the org knows them: a pseudonym (D13), the same for their session and their admin key. */
  const me = async (r: FastifyRequest): Promise<{ pseudonym: string; actor: Actor }> => {
    const p = r.principal!
    const pseudonym = await d.keyring.pseudonym(orgOf(r), p.userId)
    return { pseudonym, actor: { type: p.kind === 'session' ? 'user' : 'api_key', id: pseudonym, requestId: r.id } }
  }

  // ---- artifacts (RIGHTS-3) ----
  app.post('/api/orgs/:org/artifacts', {
    config: { action: 'artifact.write' },
    schema: {
      summary: 'Save an output to my workspace (only when an OWNER turned the workspace on: 403 workspace_disabled otherwise). Content (≤ 64 KiB UTF-8) and title are encrypted under the org key; temporary ones expire after 24 h. Answers metadata only.',
      params: ORG_PARAMS,
      body: object({ content: TEXT, title: { type: 'string', minLength: 1, maxLength: 200 }, temporary: { type: 'boolean' } }, ['content']),
      response: { 201: ARTIFACT },
    },
  }, async (request, reply) => {
    const b = request.body as { content: string; title?: string; temporary?: boolean }
    const { pseudonym, actor } = await me(request)
    const saved = await artifacts.save({ orgId: orgOf(request), ownerId: pseudonym, content: b.content, title: b.title ?? null, temporary: b.temporary === true, actor })
    return reply.code(201).send(presentArtifact(saved))
  })

  app.get('/api/orgs/:org/artifacts', {
    config: { action: 'artifact.read' },
    schema: { summary: 'My artifacts in this org, newest first: metadata only (never anyone else\'s).', params: ORG_PARAMS, response: { 200: object({ artifacts: { type: 'array', items: ARTIFACT } }) } },
  }, async (request) => {
    const { pseudonym } = await me(request)
    return { artifacts: (await artifacts.list(orgOf(request), pseudonym)).map(presentArtifact) }
  })

  app.get('/api/orgs/:org/artifacts/:id', {
    config: { action: 'artifact.read' },
    schema: {
      summary: 'One of my artifacts, decrypted (404 for anyone else\'s, whatever the role, and once a temporary one expired).',
      params: PARAMS,
      response: { 200: object({ ...ARTIFACT_FIELDS, title: { type: ['string', 'null'] }, content: { type: 'string' } }) },
    },
  }, async (request, reply) => {
    const { pseudonym } = await me(request)
    const a = await artifacts.open(orgOf(request), pseudonym, idOf(request))
    if (!a) throw new TollgateError('not_found')
    reply.header('cache-control', 'no-store')
    return { ...presentArtifact(a), title: a.title, content: a.content }
  })

  app.delete('/api/orgs/:org/artifacts/:id', {
    config: { action: 'artifact.write' },
    schema: { summary: 'Delete one of my artifacts now (audited artifact_deleted).', params: PARAMS, response: { 200: OK } },
  }, async (request) => {
    const { pseudonym, actor } = await me(request)
    if (!(await artifacts.delete({ orgId: orgOf(request), ownerId: pseudonym, id: idOf(request), actor }))) throw new TollgateError('not_found')
    return { ok: true }
  })

  // ---- reports of harmful output (GW-8) ----
  app.post('/api/orgs/:org/reports', {
    config: { action: 'report.create' },
    schema: {
      summary: 'Report a harmful output: the text you submit (≤ 16 KiB UTF-8), an MLCommons hazard category, and optionally the x-tollgate-decision id. Stored encrypted under the org key until review, withdrawal, or 30 days.',
      params: ORG_PARAMS,
      body: object({ text: TEXT, category: CATEGORY, decision_id: ID }, ['text', 'category']),
      response: { 201: REPORT },
    },
  }, async (request, reply) => {
    const b = request.body as { text: string; category: SafetyCode; decision_id?: string }
    const { pseudonym, actor } = await me(request)
    const r = await reports.submit({ orgId: orgOf(request), reporterId: pseudonym, text: b.text, category: b.category, decisionId: b.decision_id ?? null, actor })
    return reply.code(201).send(presentReport(r))
  })

  app.get('/api/orgs/:org/reports', {
    config: { action: 'report.review' },
    schema: {
      summary: 'The review queue: open reports, oldest first (100 at a time), decrypted; the reporter appears only as their pseudonym in the org.',
      params: ORG_PARAMS,
      response: { 200: object({ reports: { type: 'array', items: object({ ...REPORT_FIELDS, reporter: { type: 'string' }, text: { type: 'string' } }) } }) },
    },
  }, async (request, reply) => {
    const queue = await reports.queue(orgOf(request))
    reply.header('cache-control', 'no-store')
    return { reports: queue.map((r) => ({ ...presentReport(r), reporter: r.reporter, text: r.text })) }
  })

  app.post('/api/orgs/:org/reports/:id/resolve', {
    config: { action: 'report.review' },
    schema: {
      summary: 'Close a report as actioned or dismissed: it is deleted at once, and the outcome audited (report_actioned / report_dismissed).',
      params: PARAMS,
      body: object({ outcome: { type: 'string', enum: REPORT_OUTCOMES } }),
      response: { 200: object({ id: ID, outcome: { type: 'string', enum: REPORT_OUTCOMES }, resolved_at: TIME }) },
    },
  }, async (request) => {
    const { outcome } = request.body as { outcome: ReportOutcome }
    const { actor } = await me(request)
    if (!(await reports.resolve({ orgId: orgOf(request), id: idOf(request), outcome, actor }))) throw new TollgateError('not_found')
    return { id: idOf(request), outcome, resolved_at: iso(d.clock.now()) }
  })

  app.delete('/api/orgs/:org/reports/:id', {
    config: { action: 'report.create' },
    schema: { summary: 'Withdraw one of my open reports: deleted at once (audited report_withdrawn).', params: PARAMS, response: { 200: OK } },
  }, async (request) => {
    const { pseudonym, actor } = await me(request)
    if (!(await reports.withdraw({ orgId: orgOf(request), reporterId: pseudonym, id: idOf(request), actor }))) throw new TollgateError('not_found')
    return { ok: true }
  })
}
