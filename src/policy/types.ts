import type { Detector, PiiKind } from '../classify/facts.ts'

/** A friction decision (GW-4), from least to most restrictive. */
export const ACTIONS = ['allow', 'redact', 'challenge', 'block'] as const
export type FrictionAction = (typeof ACTIONS)[number]

/** Who is asking, as the policy may match on it. */
export interface PolicySubject {
  readonly role: string | null
  readonly cohorts: readonly string[]
  readonly environment: 'sandbox' | 'production'
}

/** The outcome of `evaluatePolicy` (pure): what to do, which rule decided and why — codes, never text. */
export interface PolicyDecision {
  readonly action: FrictionAction
  /** The enforced rule that decided, or null for the policy's default. */
  readonly ruleId: string | null
  readonly reason: string | null
  /** PII kinds to replace before anything is forwarded (with `redact`, and also under `challenge`). */
  readonly redact: readonly PiiKind[]
  /** Rules in shadow mode that matched: recorded, not enforced. */
  readonly shadow: readonly { readonly ruleId: string; readonly action: FrictionAction }[]
  /** Detectors whose failure decided the outcome through a rule's failure mode. */
  readonly failedDetectors: readonly Detector[]
  /** Output moderation for this request (GW-6): screen the model's answer, and what to do on a hit. */
  readonly output: { readonly screen: boolean; readonly action: 'block' | 'allow' }
}
