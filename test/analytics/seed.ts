import { newId, newRequestId } from '../../src/core/ids.ts'
import type { DecisionTable } from '../../src/storage/schema.ts'
import type { TestApp } from '../helpers/app.ts'

/**
 * Realistic decision records written straight to the table (what the gateway's writer stores):
 * pseudonymous actors (the org key's HMAC of a person id), real key ids, fresh request ids.
 * Returns every id it used, so a test can prove none of them comes back.
 */
export interface Seeded {
  readonly ids: string[]
}

export interface Spec {
  readonly person: string | null
  readonly environment: 'sandbox' | 'production'
  readonly at: number
  readonly outcome?: string
  readonly status?: number
  readonly domain?: string | null
  readonly intent?: string | null
  readonly ruleId?: string | null
  readonly passed?: 0 | 1 | null
  readonly score?: number | null
  /** The person's team when the request was decided (decision.cohort). */
  readonly team?: string | null
}

export async function seedDecisions(tg: TestApp, orgId: string, keyIds: { sandbox: string; production: string }, specs: readonly Spec[]): Promise<Seeded> {
  const ids: string[] = []
  const rows: DecisionTable[] = []
  for (const s of specs) {
    const actor = s.person === null ? null : await tg.deps.keyring.pseudonym(orgId, s.person)
    const row: DecisionTable = {
      id: newId(), org_id: orgId, environment: s.environment, key_id: keyIds[s.environment], actor_id: actor, request_id: newRequestId(),
      endpoint: 'intercept', model: 'claude-sonnet-4-5', provider: 'anthropic', outcome: s.outcome ?? 'allowed', status: s.status ?? 200,
      error_code: s.status === 429 ? 'rate_limited' : s.outcome === 'blocked' ? 'blocked_by_policy' : null, stream: 0, input_tokens: 12, output_tokens: 40,
      attachment_count: 0, attachment_types: null, prompt_fingerprint: null, domain: s.domain === undefined ? 'coding' : s.domain,
      intent: s.intent === undefined ? 'do_it' : s.intent, friction: null, passed: s.passed ?? null, reasoning_score: s.score ?? null,
      rule_id: s.ruleId ?? null, reason: null, cohort: s.team ?? null, finding_codes: null, classifier: 'embedded', classify_ms: 1, policy_ms: 0.1, auth_ms: 0.2, upstream_ms: 10,
      total_ms: 12, created_at: s.at, completed_at: s.at + 12,
    }
    rows.push(row)
    ids.push(row.id, row.request_id, row.key_id!, ...(actor ? [actor] : []))
  }
  for (let i = 0; i < rows.length; i += 200) await tg.deps.db.db.insertInto('decision').values(rows.slice(i, i + 200)).execute()
  return { ids: [...new Set(ids)] }
}

/** `n` people named `${tag}0`…, for specs. */
export const people = (tag: string, n: number, from = 0) => Array.from({ length: n }, (_, i) => `${tag}${from + i}`)
