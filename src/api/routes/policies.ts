import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Kysely } from 'kysely'
import type { AuditLog } from '../../audit/audit.ts'
import type { Classifier } from '../../classify/facts.ts'
import type { Clock } from '../../core/clock.ts'
import { ERRORS, TollgateError } from '../../core/errors.ts'
import type { Environment } from '../../core/model.ts'
import type { Actor } from '../../keys/keys.repo.ts'
import { OrgSettingsStore, type OrgSettings } from '../../orgs/org-settings.ts'
import { LLM_MODES, type LlmModeSetting } from '../../classify/facts.ts'
import { COHORT } from '../../policy/document.ts'
import { dryRun } from '../../policy/dry-run.ts'
import { PolicyStore, POLICY_STATUSES, type StoredPolicy } from '../../policy/policies.repo.ts'
import { DECISION_SCHEMA, FACTS_SCHEMA } from '../../policy/present.ts'
import { validatePolicy, type PolicyProblem } from '../../policy/validate.ts'
import type { OrgKeyring } from '../../privacy/org-keys.ts'
import type { DB } from '../../storage/schema.ts'
import { ENVIRONMENT, ID, iso, NULLABLE_TIME, object, ORG_PARAMS, ROLE, TIME } from '../schemas.ts'

export interface PolicyRouteDeps {
  readonly clock: Clock
  readonly db: Kysely<DB>
  readonly audit: AuditLog
  readonly keyring: OrgKeyring
  /** The store the gateway reads too (so its cache is invalidated at once); built here when absent. */
  readonly policies?: PolicyStore
  readonly orgSettings?: OrgSettingsStore
  /** Classifies sandbox test prompts. Without one, prompt samples answer 501 (facts samples still work). */
  readonly classifier?: Classifier
}

/** A policy document in a request body: any JSON object; `validatePolicy` judges it, with exact paths. */
const DOCUMENT_IN = { type: 'object' } as const
const DOCUMENT_OUT = { type: 'object', additionalProperties: true } as const
const STATUS = { type: 'string', enum: POLICY_STATUSES } as const
const POLICY_FIELDS = {
  id: ID, environment: ENVIRONMENT, version: { type: 'integer' }, status: STATUS, source_id: { type: ['string', 'null'] },
  created_at: TIME, created_by: { type: ['string', 'null'] }, updated_at: TIME, activated_at: NULLABLE_TIME, tested_at: NULLABLE_TIME, retired_at: NULLABLE_TIME,
}
const POLICY_SUMMARY = object(POLICY_FIELDS)
const POLICY = object({ ...POLICY_FIELDS, document: DOCUMENT_OUT })
const PROBLEM = object({ path: { type: 'string' }, message: { type: 'string' } })
const POLICY_PARAMS = object({ org: ID, id: ID })
const CLASSIFIER_LLM = { type: ['string', 'null'], enum: [...LLM_MODES, null] }
const SETTINGS = object({ training_consent: { type: 'boolean' }, classifier_llm: CLASSIFIER_LLM, workspace: { type: 'boolean' }, updated_at: NULLABLE_TIME })
const SETTINGS_PATCH = { ...object({ training_consent: { type: 'boolean' }, classifier_llm: CLASSIFIER_LLM, workspace: { type: 'boolean' } }, []), minProperties: 1 }
const SAMPLE = {
  type: 'object', additionalProperties: false,
  properties: {
    prompt: { type: 'string', minLength: 1, maxLength: 32_768 },
    facts: { type: 'object' },
    role: ROLE,
    cohorts: { type: 'array', maxItems: 64, items: { type: 'string', pattern: COHORT.source } },
  },
  oneOf: [{ required: ['prompt'] }, { required: ['facts'] }],
} as const

function presentSummary(p: StoredPolicy) {
  return {
    id: p.id, environment: p.environment, version: p.version, status: p.status, source_id: p.sourceId, created_at: iso(p.createdAt), created_by: p.createdBy,
    updated_at: iso(p.updatedAt), activated_at: iso(p.activatedAt), tested_at: iso(p.testedAt), retired_at: iso(p.retiredAt),
  }
}
const presentPolicy = (p: StoredPolicy) => ({ ...presentSummary(p), document: p.document })
const presentSettings = (s: OrgSettings) => ({ training_consent: s.trainingConsent, classifier_llm: s.classifierLlm, workspace: s.workspace, updated_at: iso(s.updatedAt) })

/** 400 invalid_request with every problem and its path (the client's own document, never echoed). */
function rejectDocument(request: FastifyRequest, reply: FastifyReply, problems: readonly PolicyProblem[], param: string) {
  return reply.code(ERRORS.invalid_request.status).type('application/json; charset=utf-8')
    .send({ error: { code: 'invalid_request', message: ERRORS.invalid_request.message, param, problems, request_id: request.id } })
}

/**
 * Policies (GW-4, GW-6, GW-7) and org settings (DATA-4). Every change is audited with its effect;
 * promotion and retirement (what production enforces) and settings changes need a step-up.
 *
 * Flow: POST /policies (sandbox draft) → PUT /policies/:id (edit draft) → POST …/activate (live
 * for sandbox keys) → POST …/test (dry run on sample prompts; records only that it ran) →
 * POST …/promote (a new production version) → POST …/retire.
 */
export function registerPolicyRoutes(app: FastifyInstance, d: PolicyRouteDeps): void {
  const policies = d.policies ?? new PolicyStore(d.db, d.clock, d.audit)
  const settings = d.orgSettings ?? new OrgSettingsStore(d.db, d.clock, d.audit)
  const orgOf = (r: FastifyRequest) => r.orgAccess!.orgId
  const idOf = (r: FastifyRequest) => (r.params as { id: string }).id
  /** The acting person by the org's pseudonym (D13), resolved before any transaction (SQLite has one connection). */
  const actor = async (r: FastifyRequest): Promise<Actor> => {
    const p = r.principal!
    return { type: p.kind === 'session' ? 'user' : 'api_key', id: await d.keyring.pseudonym(orgOf(r), p.userId), requestId: r.id }
  }

  app.get('/api/orgs/:org/policies', {
    config: { action: 'policy.read' },
    schema: {
      summary: 'Policies of the org (newest version first per environment), without their documents.',
      params: ORG_PARAMS,
      querystring: { type: 'object', additionalProperties: false, properties: { environment: ENVIRONMENT, status: STATUS } },
      response: { 200: object({ policies: { type: 'array', items: POLICY_SUMMARY } }) },
    },
  }, async (request) => {
    const q = request.query as { environment?: Environment; status?: (typeof POLICY_STATUSES)[number] }
    return { policies: (await policies.list(orgOf(request), q)).map(presentSummary) }
  })

  app.get('/api/orgs/:org/policies/active', {
    config: { action: 'policy.read' },
    schema: {
      summary: 'The policy in force in each environment: the active one, or the built-in default (id and version null).',
      params: ORG_PARAMS,
      response: { 200: object({ sandbox: object({ id: { type: ['string', 'null'] }, version: { type: ['integer', 'null'] }, document: DOCUMENT_OUT }), production: object({ id: { type: ['string', 'null'] }, version: { type: ['integer', 'null'] }, document: DOCUMENT_OUT }) }) },
    },
  }, async (request) => {
    const orgId = orgOf(request)
    const [sandbox, production] = await Promise.all([policies.activeFor(orgId, 'sandbox'), policies.activeFor(orgId, 'production')])
    return { sandbox, production }
  })

  app.post('/api/orgs/:org/policies/validate', {
    config: { action: 'policy.read' },
    schema: {
      summary: 'Validate a policy document: every problem with its exact path. Nothing is stored.',
      params: ORG_PARAMS, body: object({ document: DOCUMENT_IN }),
      response: { 200: object({ ok: { type: 'boolean' }, problems: { type: 'array', items: PROBLEM } }) },
    },
  }, async (request) => {
    const r = validatePolicy((request.body as { document: unknown }).document)
    return r.ok ? { ok: true, problems: [] } : { ok: false, problems: prefixed(r.problems) }
  })

  app.get('/api/orgs/:org/policies/:id', {
    config: { action: 'policy.read' },
    schema: { summary: 'One policy with its document.', params: POLICY_PARAMS, response: { 200: POLICY } },
  }, async (request) => {
    const p = await policies.get(orgOf(request), idOf(request))
    if (!p) throw new TollgateError('not_found')
    return presentPolicy(p)
  })

  app.post('/api/orgs/:org/policies', {
    config: { action: 'policy.write' },
    schema: {
      summary: 'Create a sandbox draft from a policy document. An invalid document gets 400 with every problem and its path, and nothing is stored.',
      params: ORG_PARAMS, body: object({ document: DOCUMENT_IN }), response: { 201: POLICY },
    },
  }, async (request, reply) => {
    const document = (request.body as { document: unknown }).document
    const v = validatePolicy(document)
    if (!v.ok) return rejectDocument(request, reply, prefixed(v.problems), 'body.document')
    const created = await policies.createDraft({ orgId: orgOf(request), document: v.doc, actor: await actor(request) })
    return reply.code(201).send(presentPolicy(created))
  })

  app.put('/api/orgs/:org/policies/:id', {
    config: { action: 'policy.write' },
    schema: {
      summary: 'Replace a draft\'s document (only drafts change; its sandbox test must be run again).',
      params: POLICY_PARAMS, body: object({ document: DOCUMENT_IN }), response: { 200: POLICY },
    },
  }, async (request, reply) => {
    const v = validatePolicy((request.body as { document: unknown }).document)
    if (!v.ok) return rejectDocument(request, reply, prefixed(v.problems), 'body.document')
    return presentPolicy(await policies.updateDraft({ orgId: orgOf(request), id: idOf(request), document: v.doc, actor: await actor(request) }))
  })

  app.post('/api/orgs/:org/policies/:id/activate', {
    config: { action: 'policy.write' },
    schema: { summary: 'Make a draft the active sandbox policy (sandbox keys get it at once); the one it replaces is retired.', params: POLICY_PARAMS, body: object({}), response: { 200: POLICY } },
  }, async (request) => presentPolicy(await policies.activate({ orgId: orgOf(request), id: idOf(request), actor: await actor(request) })))

  app.post('/api/orgs/:org/policies/:id/test', {
    config: { action: 'policy.test' },
    schema: {
      summary: 'Dry run: classify each sample prompt in memory (or take its facts) and evaluate the policy. The samples and results are never stored; for a sandbox draft or active sandbox policy, the time of the test is (promotion needs it).',
      params: POLICY_PARAMS,
      body: object({ samples: { type: 'array', minItems: 1, maxItems: 50, items: SAMPLE } }),
      response: {
        200: object({
          policy_id: ID, version: { type: 'integer' }, environment: ENVIRONMENT, recorded: { type: 'boolean' },
          results: { type: 'array', items: object({ index: { type: 'integer' }, decision: DECISION_SCHEMA, facts: FACTS_SCHEMA, policy_ms: { type: 'number' } }) },
        }),
      },
    },
  }, async (request, reply) => {
    const orgId = orgOf(request)
    const p = await policies.get(orgId, idOf(request))
    if (!p) throw new TollgateError('not_found')
    const samples = (request.body as { samples: { prompt?: string; facts?: unknown; role?: string; cohorts?: string[] }[] }).samples
    // A client that goes away stops the classification (the response's close, before it finished).
    const abort = new AbortController()
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) abort.abort()
    })
    const run = await dryRun(p.document, samples, p.environment, d.classifier, abort.signal)
    if (!run.ok && 'problems' in run) return rejectDocument(request, reply, run.problems, 'body.samples')
    if (!run.ok) throw new TollgateError('not_implemented', { reason: 'no_classifier' }, 'body.samples')
    const recorded = p.environment === 'sandbox' && p.status !== 'retired'
    if (recorded) await policies.recordTest({ orgId, id: p.id, actor: await actor(request) })
    return { policy_id: p.id, version: p.version, environment: p.environment, recorded, results: run.results }
  })

  app.post('/api/orgs/:org/policies/:id/promote', {
    config: { action: 'policy.promote' },
    schema: {
      summary: 'Promote an active, tested sandbox policy: its document becomes a new production version, active at once (409 with param tested_at before a sandbox test, status when it is not the active sandbox policy).',
      params: POLICY_PARAMS, body: object({}), response: { 201: POLICY },
    },
  }, async (request, reply) => {
    const promoted = await policies.promote({ orgId: orgOf(request), id: idOf(request), actor: await actor(request) })
    return reply.code(201).send(presentPolicy(promoted))
  })

  app.post('/api/orgs/:org/policies/:id/retire', {
    config: { action: 'policy.retire' },
    schema: { summary: 'Retire a draft or an active policy; an environment without an active policy uses the built-in default.', params: POLICY_PARAMS, body: object({}), response: { 200: POLICY } },
  }, async (request) => presentPolicy(await policies.retire({ orgId: orgOf(request), id: idOf(request), actor: await actor(request) })))

  // ---- org settings (DATA-4) ----
  app.get('/api/orgs/:org/settings', {
    config: { action: 'settings.read' },
    schema: { summary: 'Org settings: training_consent (DATA-4) is false unless an OWNER opted in; Tollgate never trains on content either way.', params: ORG_PARAMS, response: { 200: SETTINGS } },
  }, async (request) => presentSettings(await settings.get(orgOf(request))))

  app.patch('/api/orgs/:org/settings', {
    config: { action: 'settings.write' },
    schema: { summary: 'Change org settings (OWNER, step-up): training_consent (audited as training_consent_granted / training_consent_withdrawn) and classifier_llm — off, low_margin, always, or null for the instance setting (audited as classifier_llm_changed), and workspace — whether members may save outputs, encrypted under the org key (RIGHTS-3; audited as workspace_enabled / workspace_disabled).', params: ORG_PARAMS, body: SETTINGS_PATCH, response: { 200: SETTINGS } },
  }, async (request) => {
    const body = request.body as { training_consent?: boolean; classifier_llm?: LlmModeSetting | null; workspace?: boolean }
    return presentSettings(await settings.update({
      orgId: orgOf(request), actor: await actor(request),
      ...(body.training_consent !== undefined ? { trainingConsent: body.training_consent } : {}),
      ...(body.classifier_llm !== undefined ? { classifierLlm: body.classifier_llm } : {}),
      ...(body.workspace !== undefined ? { workspace: body.workspace } : {}),
    }))
  })
}

/** Problem paths are JSONPaths into the request body: `$.rules[0]` of the document → `$.document.rules[0]`. */
function prefixed(problems: readonly PolicyProblem[]): PolicyProblem[] {
  return problems.map((p) => ({ path: p.path.replace(/^\$/, '$.document'), message: p.message }))
}
