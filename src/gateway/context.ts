import type { Clock } from '../core/clock.ts'
import { monotonicMs } from '../core/clock.ts'
import type { ErrorCode } from '../core/errors.ts'
import { newId } from '../core/ids.ts'
import type { ClientFormat, ProviderName, Usage } from '../core/model.ts'
import type { DecisionRecord } from '../decisions/record.ts'
import type { VerifiedKey } from '../keys/keys.repo.ts'
import type { Facts } from '../classify/facts.ts'
import type { FrictionAction } from '../policy/types.ts'
import type { Claimed } from '../idempotency/claim.ts'

/**
 * Outcomes recorded in decision records: forwarded (`allowed`, `redacted`), held (`challenged`,
 * `challenge_failed`), refused (`blocked`, `output_blocked`, `rejected`), or failed.
 */
export type Outcome = 'allowed' | 'redacted' | 'challenged' | 'challenge_failed' | 'blocked' | 'output_blocked' | 'rejected' | 'upstream_error' | 'aborted' | 'error'

const round = (ms: number) => Math.round(ms * 100) / 100

/**
 * What the steps learn about one AI request, in the order they learn it. It becomes the
 * decision record and the `Server-Timing` header; it never holds request text.
 */
export class Trace {
  readonly decisionId = newId()
  readonly createdAt: number
  readonly #t0 = monotonicMs()
  readonly #timings: [string, number][] = []
  key: VerifiedKey | undefined
  actorId: string | null = null
  fingerprint: string | null = null
  /** The reason code a stop was answered with (a policy's block reason), recorded for replays. */
  reason: string | null = null
  /** The key's member in its org (role and team), set at admission; null for a key without one. */
  member: { readonly role: string; readonly team: string | null } | null = null
  model: string | null = null
  provider: ProviderName | null = null
  stream = false
  attachmentTypes: readonly string[] = []
  usage: Usage = { inputTokens: undefined, outputTokens: undefined }
  /** Headers every answer to this request carries (rate-limit state). */
  headers: Readonly<Record<string, string>> = {}
  /** The Idempotency-Key claim this request holds, settled when it ends. */
  idempotency: Claimed | undefined
  /** Set once the decision record is durable. */
  committed: { readonly status: number } | undefined
  /** What the classifier found (labels, scores, codes): recorded as codes. */
  facts: Facts | undefined
  /** The policy's decision and the rule that made it. */
  decision: { readonly action: FrictionAction; readonly ruleId: string | null; readonly shadow: readonly { readonly ruleId: string }[] } | undefined
  /** A challenge reply's grade (GW-5). */
  grade: { readonly passed: boolean; readonly score: number } | undefined

  constructor(
    readonly requestId: string,
    readonly endpoint: ClientFormat,
    private readonly clock: Clock,
  ) {
    this.createdAt = clock.now()
  }

  /** Times one step; the duration goes into Server-Timing and the record. */
  async time<T>(step: string, fn: () => Promise<T>): Promise<T> {
    const t = monotonicMs()
    try {
      return await fn()
    } finally {
      this.#timings.push([step, monotonicMs() - t])
    }
  }

  /** Times one synchronous step (the policy evaluation). */
  timeSync<T>(step: string, fn: () => T): T {
    const t = monotonicMs()
    try {
      return fn()
    } finally {
      this.#timings.push([step, monotonicMs() - t])
    }
  }

  /** The finding codes of the record: safety codes, PII kinds, PI (prompt injection), shadow rules, failed detectors. */
  findingCodes(): string | null {
    const codes = new Set<string>()
    const f = this.facts
    if (f) {
      for (const s of f.safety) codes.add(s.code)
      for (const p of f.pii) codes.add(p.kind)
      if (f.promptInjection) codes.add('PI')
      for (const e of f.errors) codes.add(`error:${e}`)
    }
    for (const s of this.decision?.shadow ?? []) codes.add(`shadow:${s.ruleId}`)
    return codes.size === 0 ? null : [...codes].join(',')
  }

  timing(step: string): number | null {
    let sum: number | null = null
    for (const [s, ms] of this.#timings) if (s === step) sum = (sum ?? 0) + ms
    return sum === null ? null : round(sum)
  }

  elapsed(): number {
    return monotonicMs() - this.#t0
  }

  /** `Server-Timing` (TRANSIT-5): each step's duration, and the total so far. */
  serverTiming(): string {
    const parts = this.#timings.map(([s, ms]) => `${s};dur=${round(ms)}`)
    parts.push(`total;dur=${round(this.elapsed())}`)
    return parts.join(', ')
  }

  record(outcome: Outcome, status: number, errorCode: ErrorCode | null): DecisionRecord {
    const key = this.key!
    return {
      id: this.decisionId,
      org_id: key.orgId,
      environment: key.environment,
      key_id: key.id,
      actor_id: this.actorId,
      request_id: this.requestId,
      endpoint: this.endpoint,
      model: this.model,
      provider: this.provider,
      outcome,
      status,
      error_code: errorCode,
      stream: this.stream ? 1 : 0,
      input_tokens: this.usage.inputTokens ?? null,
      output_tokens: this.usage.outputTokens ?? null,
      attachment_count: this.attachmentTypes.length,
      attachment_types: this.attachmentTypes.length > 0 ? this.attachmentTypes.join(',') : null,
      prompt_fingerprint: this.fingerprint,
      // Without the model, the domain is unknown and the intent is known only from a cue rule.
      domain: this.facts && !this.facts.modelSkipped ? this.facts.domain : null,
      intent: this.facts && (!this.facts.modelSkipped || this.facts.intentScore >= 0.8) ? this.facts.intent : null,
      friction: this.decision?.action ?? null,
      passed: this.grade ? (this.grade.passed ? 1 : 0) : null,
      reasoning_score: this.grade?.score ?? null,
      rule_id: this.decision?.ruleId ?? null,
      reason: this.reason,
      cohort: this.member?.team ?? null,
      finding_codes: this.findingCodes(),
      classifier: this.facts?.classifier ?? null,
      classify_ms: this.timing('classify'), policy_ms: this.timing('policy'),
      auth_ms: this.timing('auth'),
      upstream_ms: this.timing('upstream'),
      total_ms: round(this.elapsed()),
      created_at: this.createdAt,
      completed_at: this.clock.now(),
    }
  }
}
