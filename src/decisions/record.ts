import type { DecisionTable } from '../storage/schema.ts'

/** A decision record row (TRANSIT-3): labels, codes, counts and timings — never text. */
export type DecisionRecord = DecisionTable

/** Column order used by the writers (and checked against the schema by the schema test). */
export const DECISION_COLUMNS = [
  'id', 'org_id', 'environment', 'key_id', 'actor_id', 'request_id', 'endpoint', 'model', 'provider', 'outcome', 'status',
  'error_code', 'stream', 'input_tokens', 'output_tokens', 'attachment_count', 'attachment_types', 'prompt_fingerprint',
  'domain', 'intent', 'friction', 'passed', 'reasoning_score', 'rule_id', 'reason', 'cohort', 'finding_codes', 'classifier', 'classify_ms',
  'policy_ms', 'auth_ms', 'upstream_ms', 'total_ms', 'created_at', 'completed_at',
] as const satisfies readonly (keyof DecisionTable)[]

/** Where committed batches go: one transaction per call, resolved only once durable. */
export interface DecisionSink {
  write(rows: readonly DecisionRecord[]): Promise<void>
  /**
   * Commits the rows on the calling thread before returning (one transaction); false, with
   * nothing written, when another connection holds the database's write lock. Optional: a sink
   * whose writes are not synchronous has none.
   */
  writeNow?(rows: readonly DecisionRecord[]): boolean
  close(): Promise<void>
}
