import type { Classifier, Facts, LlmModeSetting } from '../classify/facts.ts'
import { DETECTORS } from '../classify/facts.ts'
import type { Clock } from '../core/clock.ts'
import { Content } from '../core/content.ts'
import { TollgateError, type ErrorCode } from '../core/errors.ts'
import type { Environment, ModelRequest } from '../core/model.ts'
import type { DecisionRecords } from '../decisions/records.ts'
import type { DecisionWriter } from '../decisions/writer.ts'
import type { Grader, QuestionSource } from '../friction/friction.ts'
import { FEEDBACK } from '../friction/grade.ts'
import type { ChallengeHolds, Hold } from '../friction/holds.ts'
import { claimIdempotency } from '../idempotency/claim.ts'
import type { IdempotencyStore } from '../idempotency/store.ts'
import { authenticate } from '../keys/authenticate.ts'
import type { KeyStore, VerifiedKey } from '../keys/keys.repo.ts'
import type { Logger } from '../observe/log.ts'
import { safeError } from '../observe/log.ts'
import type { Metrics } from '../observe/metrics.ts'
import { evaluatePolicy, needsModel } from '../policy/evaluate.ts'
import type { PolicyStore } from '../policy/policies.repo.ts'
import type { PolicyDecision } from '../policy/types.ts'
import { OrgKeyDestroyed, type OrgKeyring } from '../privacy/org-keys.ts'
import type { ProviderRegistry } from '../providers/registry.ts'
import type { RateLimiter } from '../ratelimit/limits.ts'
import type { RateTiers } from '../ratelimit/tiers.ts'
import { jsonAnswer, replayAnswer, sendError, settleIdempotency, stopRecorded, streamAnswer, textAnswer, type OutputScreen } from './answer.ts'
import { Trace } from './context.ts'
import type { InFlight } from './in-flight.ts'
import type { AiReply } from './reply.ts'
import { challengeReply, challengeText, classifierInput, lastUserText, redactRequest } from './wire/segments.ts'
import { checkAttachmentLimits, type AttachmentLimits } from './wire/limits.ts'
import { promptFingerprint } from './wire/text.ts'
import type { DecisionView, ReplyContext, Wire } from './wire/wire.ts'

export interface GatewayDeps {
  readonly clock: Clock
  readonly keys: KeyStore
  readonly keyring: OrgKeyring
  readonly providers: ProviderRegistry
  readonly decisions: DecisionWriter
  /** AI requests being answered now (the decision writer reads it). */
  readonly inFlight: InFlight
  readonly records: DecisionRecords
  readonly metrics: Metrics
  readonly log: Logger
  /** Key environments this instance serves. */
  readonly environments: readonly Environment[]
  readonly rate: RateLimiter
  readonly tiers: RateTiers
  readonly idempotency: IdempotencyStore
  readonly classifier: Classifier
  /** `always` runs the embedding model on every request; `as_needed` only when the active policy needs it. */
  readonly classifierModel: 'always' | 'as_needed'
  readonly policies: PolicyStore
  readonly holds: ChallengeHolds
  readonly grader: Grader
  readonly questions: QuestionSource
  /** The org's choice of LLM classification (GW-3), or null for the instance setting. */
  readonly classifierLlmOf: (orgId: string) => Promise<LlmModeSetting | null>
  /** The role and team of a key's member in its org (the policy may match on both), or null. */
  readonly memberOf: (orgId: string, userId: string | null) => Promise<{ readonly role: string; readonly team: string | null } | null>
  /** LIMIT-3: attachment count and decoded sizes, checked before anything is decoded. */
  readonly attachmentLimits: AttachmentLimits
}

export interface AiRequest {
  readonly wire: Wire
  /** The route pattern (an Idempotency-Key is bound to it). */
  readonly route: string
  readonly requestId: string
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: unknown
  /** Aborts when the client goes away: the upstream call is cancelled with it. */
  readonly signal: AbortSignal
}

/**
 * THE REQUEST PATH. Every AI request (Anthropic, OpenAI or native format) goes through here:
 *
 *   authenticate → environment → rate limit → idempotency → parse → route → classify → policy
 *   → friction (block | challenge | redact | allow) → provider (+ output screen) → decision record → answer
 *
 * A stop (bad key, bad request, a block, a challenge, an upstream failure) is a returned answer,
 * not an exception. Once the key is known, every way out records a decision — labels, codes and
 * timings, never text — committed before the answer completes (D8).
 */
export async function handleAiRequest(req: AiRequest, d: GatewayDeps, reply: AiReply): Promise<void> {
  const trace = new Trace(req.requestId, req.wire.format, d.clock)
  try {
    await decideAndAnswer(req, d, reply, trace)
  } finally {
    if (trace.idempotency) await settleIdempotency(trace, d, req.signal.aborted)
  }
}

async function decideAndAnswer(req: AiRequest, d: GatewayDeps, reply: AiReply, trace: Trace): Promise<void> {
  // Step 1: who is asking (a gateway key), and may they ask here.
  const who = await admit(req, d, reply, trace)
  if (!who) return

  // Step 3: a retry with the same Idempotency-Key gets the recorded decision, never a second
  // provider call and never the output (D2). Conflicts are answered, not recorded: nothing was decided.
  const idem = await claimIdempotency(d.idempotency, d.keyring, req.headers['idempotency-key'], { orgId: who.orgId, principal: who.id, method: 'POST', route: req.route }, req.body, undefined, trace.decisionId)
  if (idem.kind === 'stop') return sendError(req.wire, trace, reply, { code: idem.code })
  if (idem.kind === 'replay') return replayAnswer(req, idem.recorded.decisionId === null ? undefined : await d.records.byId(who.orgId, idem.recorded.decisionId), trace, reply)
  if (idem.kind === 'claimed') trace.idempotency = idem.claim

  const request = await parse(req, trace, d, reply)
  if (!request) return
  trace.fingerprint = promptFingerprint(request, await d.keyring.key(who.orgId))

  // A conversation answering a challenge (compatible APIs): the user's next turn is the reply.
  const answering = req.wire.format === 'native' ? undefined : challengeReply(request)
  if (answering) return answerChallenge(req, who, answering.id, answering.reply, request.stream, trace, d, reply)

  // Step 4: classify in memory — labels, scores and codes (GW-3). The embedding model runs unless
  // the org's policy needs nothing it provides and the instance runs it only as needed.
  const policy = await d.policies.activeFor(who.orgId, who.environment)
  const model = d.classifierModel === 'always' || needsModel(policy.document)
  const llm = await d.classifierLlmOf(who.orgId)
  const facts = await trace.time('classify', () => classify(request, req.signal, d, model, llm))
  trace.facts = facts
  // Step 5: the org's policy for this environment turns the facts into a decision (GW-4, pure).
  // The member's team is the request's cohort (GW-4), the one its record keeps (set at admission).
  const team = trace.member?.team
  const subject = { role: trace.member?.role ?? null, cohorts: team ? [team] : [], environment: who.environment }
  const decision = trace.timeSync('policy', () => evaluatePolicy(policy.document, facts, subject))
  trace.decision = decision
  const screen = decision.output.screen ? { doc: policy.document } : undefined

  // Step 6: friction.
  if (decision.action === 'block') {
    return stopRecorded(req.wire, trace, d, reply, { code: 'blocked_by_policy', ...(decision.reason ? { reason: decision.reason } : {}) }, 'blocked')
  }
  const forwarded = decision.redact.length > 0 ? redactRequest(request, facts, decision.redact) : request
  if (decision.action === 'challenge') return holdAndAsk(req, who, forwarded, facts, decision, trace, d, reply)

  // Step 7: the provider, and the decision record before the answer completes.
  return forward(req, who, forwarded, view(decision), screen, decision.redact.length > 0 ? 'redacted' : 'allowed', trace, d, reply)
}

/**
 * Step 1: the key, and who is behind it — the actor's pseudonym (the key's member, or the key
 * itself: DATA-2) and the member's role and team. Undefined when the request was answered (no
 * record: there is no org to record it under).
 */
async function identify(req: Omit<AiRequest, 'body'>, d: GatewayDeps, reply: AiReply, trace: Trace): Promise<VerifiedKey | undefined> {
  const who = await trace.time('auth', () => authenticate(req.headers, d.keys))
  if (!who.ok) {
    sendError(req.wire, trace, reply, who.stop)
    return undefined
  }
  const actorId = await actorOf(d, who.value)
  if (actorId === undefined) {
    sendError(req.wire, trace, reply, { code: 'invalid_api_key' })
    return undefined
  }
  trace.key = who.value
  trace.actorId = actorId
  trace.member = await d.memberOf(who.value.orgId, who.value.userId)
  return who.value
}

/** Step 1 and 2: the key, its environment, its rate limit. Undefined when the request was answered. */
async function admit(req: AiRequest, d: GatewayDeps, reply: AiReply, trace: Trace): Promise<VerifiedKey | undefined> {
  const key = await identify(req, d, reply, trace)
  if (!key) return undefined
  if (!d.environments.includes(key.environment)) {
    await stopRecorded(req.wire, trace, d, reply, { code: 'environment_not_served' })
    return undefined
  }
  // Step 2 (LIMIT-1): at most N AI requests in any 60 s, per key and per actor (the key's member).
  const limit = await d.tiers.limit(key.orgId, 'intercept')
  const partitions = [{ policy: 'intercept-key', key: `key:${key.id}`, limit }]
  if (key.userId !== null) partitions.push({ policy: 'intercept-actor', key: `actor:${key.orgId}:${key.userId}`, limit })
  const quota = await trace.time('ratelimit', () => d.rate.check('intercept', partitions))
  trace.headers = quota.headers
  if (!quota.allowed) {
    await stopRecorded(req.wire, trace, d, reply, { code: 'rate_limited' })
    return undefined
  }
  return key
}

/** The request in Tollgate's own terms; undefined when it was invalid (answered and recorded). */
async function parse(req: AiRequest, trace: Trace, d: GatewayDeps, reply: AiReply): Promise<ModelRequest | undefined> {
  let request: ModelRequest
  try {
    checkAttachmentLimits(req.wire.format, req.body, d.attachmentLimits)
    request = req.wire.parse(req.body, req.headers)
  } catch (err) {
    if (!(err instanceof TollgateError)) throw err
    await stopRecorded(req.wire, trace, d, reply, { code: err.code, ...(err.param ? { param: err.param } : {}) })
    return undefined
  }
  trace.stream = request.stream
  trace.attachmentTypes = request.attachmentTypes
  return request
}

/**
 * Step 4. A classifier failure does not stop the request: every detector is marked failed and
 * each policy rule applies its failure mode (fail-closed by default, GW-4).
 */
async function classify(request: ModelRequest, signal: AbortSignal, d: GatewayDeps, model: boolean, llm: LlmModeSetting | null): Promise<Facts> {
  try {
    return await d.classifier.classify(classifierInput(request), { signal, model, ...(llm ? { llm } : {}) })
  } catch (err) {
    if (signal.aborted) throw err
    d.log.error({ err: safeError(err) }, 'classifier failed: policies apply their failure modes')
    return {
      domain: 'other', domainScore: 0, domainMargin: 0, intent: 'do_it', intentScore: 0, safety: [], promptInjection: false, pii: [],
      attachments: { count: request.attachmentTypes.length, mimeTypes: [...request.attachmentTypes], imageLabels: [] },
      classifier: `${d.classifier.name}:failed`, latencyMs: 0, errors: [...DETECTORS],
    }
  }
}

/** Step 7: route to a provider, then answer (JSON or streamed) with the decision record first. */
async function forward(req: AiRequest, who: VerifiedKey, request: ModelRequest, decision: DecisionView, screen: OutputScreen | undefined, outcome: 'allowed' | 'redacted', trace: Trace, d: GatewayDeps, reply: AiReply): Promise<void> {
  const route = d.providers.resolve(request.model, who.environment)
  if (!route) return stopRecorded(req.wire, trace, d, reply, { code: 'model_not_found' })
  trace.model = route.recordedModel
  trace.provider = route.provider.name
  if (request.sameFormatOnly && route.provider.format !== req.wire.format && route.provider.format !== 'local') {
    return stopRecorded(req.wire, trace, d, reply, { code: 'not_translatable' })
  }
  const ctx = context(req, trace, request, route.provider.name, route.fallback, decision)
  return request.stream ? streamAnswer(req, request, route, ctx, trace, d, reply, screen, outcome) : jsonAnswer(req, request, route, ctx, trace, d, reply, screen, outcome)
}

/**
 * GW-5: holds the request in memory (at most the challenge TTL) and asks the sender to show
 * their reasoning first. Nothing of the request is stored; the hold is dropped when answered or expired.
 */
async function holdAndAsk(req: AiRequest, who: VerifiedKey, request: ModelRequest, facts: Facts, decision: PolicyDecision, trace: Trace, d: GatewayDeps, reply: AiReply): Promise<void> {
  const route = d.providers.resolve(request.model, who.environment)
  if (!route) return stopRecorded(req.wire, trace, d, reply, { code: 'model_not_found' })
  trace.model = route.recordedModel
  const question = await d.questions.question(facts.domain, facts.intent, req.signal)
  const hold = d.holds.hold({
    orgId: who.orgId, keyId: who.id, environment: who.environment, client: req.wire.format, request, domain: facts.domain, intent: facts.intent,
    question, ruleId: decision.ruleId, redact: decision.redact,
  })
  const challenge = { id: hold.id, question, expiresAt: hold.expiresAt, attemptsLeft: d.holds.settings.maxAttempts }
  const ctx = context(req, trace, request, route.provider.name, false, { ...view(decision), outcome: 'challenge', challenge })
  return textAnswer(req, challengeText(question, hold.id), ctx, trace, d, reply, request.stream, 'challenged')
}

/**
 * A reply to a challenge (native: POST /v1/intercept/{id}/reply; compatible APIs: the next user
 * turn). Graded; on a pass the held request goes upstream once; on a fail the sender gets
 * feedback and may try again while attempts and time remain.
 */
async function answerChallenge(req: AiRequest, who: VerifiedKey, id: string, replyText: Content, stream: boolean, trace: Trace, d: GatewayDeps, reply: AiReply): Promise<void> {
  const taken = d.holds.take(id, who.id)
  if (taken.kind !== 'held') return stopRecorded(req.wire, trace, d, reply, { code: TAKE_ERRORS[taken.kind] })
  const hold = taken.hold
  trace.facts = heldFacts(hold)
  trace.decision = { action: 'challenge', ruleId: hold.ruleId, shadow: [] }
  const grade = await trace.time('grade', () => d.grader.grade(replyText, lastUserText(hold.request), req.signal))
  trace.grade = { passed: grade.passed, score: grade.score }
  const route = d.providers.resolve(hold.request.model, who.environment)
  if (!route) return stopRecorded(req.wire, trace, d, reply, { code: 'model_not_found' })
  trace.model = route.recordedModel
  if (!grade.passed) {
    hold.attempts++
    const attemptsLeft = Math.max(0, d.holds.settings.maxAttempts - hold.attempts)
    if (attemptsLeft === 0) d.holds.release(hold.id)
    const feedback = attemptsLeft === 0 ? `${FEEDBACK[grade.feedback]} No attempts are left: the request was dropped.` : FEEDBACK[grade.feedback]
    const challenge = { id: hold.id, question: hold.question, expiresAt: hold.expiresAt, attemptsLeft, feedback, reasoningScore: grade.score }
    const ctx = context(req, trace, hold.request, route.provider.name, false, { outcome: 'challenge', ruleId: hold.ruleId, reason: null, redacted: hold.redact, challenge })
    return textAnswer(req, challengeText(hold.question, hold.id, feedback), ctx, trace, d, reply, stream, 'challenge_failed')
  }
  // Passed: the hold is used up (one upstream call), and its request goes upstream as held.
  d.holds.release(hold.id)
  const request = { ...hold.request, stream }
  return forward(req, who, request, { outcome: 'allow', ruleId: hold.ruleId, reason: null, redacted: hold.redact, reasoningScore: grade.score }, undefined, 'allowed', trace, d, reply)
}

const TAKE_ERRORS = { expired: 'challenge_expired', unknown: 'challenge_not_found', elsewhere: 'challenge_elsewhere' } as const

/** POST /v1/intercept/{id}/reply: the native API's challenge reply. */
export async function handleChallengeReply(req: AiRequest, id: string, d: GatewayDeps, reply: AiReply): Promise<void> {
  const trace = new Trace(req.requestId, req.wire.format, d.clock)
  const who = await admit(req, d, reply, trace)
  if (!who) return
  const body = req.body as Record<string, unknown> | null
  const text = body && typeof body === 'object' && !Array.isArray(body) ? body['reply'] : undefined
  const streamFlag = body && typeof body === 'object' ? body['stream'] : undefined
  const unknownField = body && typeof body === 'object' && Object.keys(body).some((k) => k !== 'reply' && k !== 'stream')
  if (typeof text !== 'string' || text.trim().length === 0 || text.length > 100_000 || unknownField || (streamFlag !== undefined && typeof streamFlag !== 'boolean')) {
    return stopRecorded(req.wire, trace, d, reply, { code: 'invalid_request', param: typeof text !== 'string' || text.trim().length === 0 ? 'reply' : 'body' })
  }
  return answerChallenge(req, who, id, Content.of(text), streamFlag === true, trace, d, reply)
}

/**
 * A request the HTTP layer refused before the pipeline saw a body (415, 413, malformed JSON):
 * if its key is valid, the refusal is recorded like any other decision.
 */
export async function rejectAiRequest(req: Omit<AiRequest, 'body'>, code: ErrorCode, d: GatewayDeps, reply: AiReply): Promise<void> {
  const trace = new Trace(req.requestId, req.wire.format, d.clock)
  if (!(await identify(req, d, reply, trace))) return
  return stopRecorded(req.wire, trace, d, reply, { code })
}

/**
 * The key's actor pseudonym; undefined when its org's keys cannot be opened — a key of a shredded
 * org, e.g. in a database restored from a backup taken before the org was terminated (D13): it is
 * refused as an invalid key, and nothing is recorded under an org that is gone.
 */
async function actorOf(d: GatewayDeps, key: VerifiedKey): Promise<string | undefined> {
  try {
    return await d.keyring.pseudonym(key.orgId, key.userId ?? `key:${key.id}`)
  } catch (err) {
    if (err instanceof OrgKeyDestroyed) return undefined
    throw err
  }
}

function view(decision: PolicyDecision): DecisionView {
  return { outcome: decision.action === 'redact' ? 'redact' : decision.action === 'challenge' ? 'challenge' : 'allow', ruleId: decision.ruleId, reason: decision.reason, redacted: decision.redact }
}

function context(req: AiRequest, trace: Trace, request: ModelRequest, provider: ReplyContext['provider'], fallback: boolean, decision: DecisionView): ReplyContext {
  const so = request.passthrough?.format === 'openai' ? request.passthrough.body['stream_options'] : undefined
  return {
    requestId: req.requestId, decisionId: trace.decisionId, model: request.model, createdS: Math.floor(trace.createdAt / 1000), provider, fallback,
    includeUsage: typeof so === 'object' && so !== null && (so as Record<string, unknown>)['include_usage'] === true,
    decision,
  }
}

/** A reply's record carries the held request's labels (its facts are gone with the original call). */
function heldFacts(hold: Hold): Facts {
  return {
    domain: hold.domain, domainScore: 0, domainMargin: 0, intent: hold.intent, intentScore: 0, safety: [], promptInjection: false, pii: [],
    attachments: { count: hold.request.attachmentTypes.length, mimeTypes: [...hold.request.attachmentTypes], imageLabels: [] },
    classifier: 'held', latencyMs: 0, errors: [],
  }
}
