/** What is already recorded under an idempotency key (in this scope). */
export interface Existing {
  readonly fingerprint: string
  readonly state: 'in_flight' | 'done'
  readonly lockUntil: number
}

/**
 * The decision for a request carrying an Idempotency-Key (pure; D2, LIMIT-2):
 * - `execute`: new key — the claim was just taken, run the request;
 * - `replay`: the same request completed before — answer with what was recorded;
 * - `mismatch` (422): the key was used for a different request (or route);
 * - `in_flight` (409): the first request with this key is still running;
 * - `take_over`: the first request's claim expired (its instance died) — run it now, once.
 */
export type IdempotencyDecision = 'execute' | 'replay' | 'mismatch' | 'in_flight' | 'take_over'

export function decideIdempotency(existing: Existing | undefined, fingerprint: string, now: number): IdempotencyDecision {
  if (!existing) return 'execute'
  if (existing.fingerprint !== fingerprint) return 'mismatch'
  if (existing.state === 'done') return 'replay'
  return existing.lockUntil > now ? 'in_flight' : 'take_over'
}
