import type { Domain, Intent, PiiKind, SafetyCode, Severity } from '../classify/facts.ts'
import type { FrictionAction } from './types.ts'

/**
 * The policy document (GW-4, GW-6, GW-7): versioned JSON, one per org and environment. Every
 * value is a label, a code, a number or a flag — never free text — so a stored policy holds
 * nothing about any person or request. `validatePolicy` turns untrusted JSON into this shape
 * with every optional field filled in (the normalized form is what is stored).
 *
 * Format version 1:
 *
 * ```json
 * {
 *   "version": 1,
 *   "default_action": "allow",
 *   "rules": [
 *     { "id": "redact-pii", "when": { "pii": { "kinds": ["EMAIL_ADDRESS", "US_SSN"] } }, "action": "redact", "reason": "pii_redacted" },
 *     { "id": "medical-learners", "when": { "domains": ["medical"], "intents": ["do_it"], "cohorts": ["students"] },
 *       "action": "challenge", "reason": "show_reasoning", "on_error": "skip", "shadow": true }
 *   ],
 *   "filters": {
 *     "prompt": { "S9": { "min_severity": "medium", "action": "block" } },
 *     "output": { "S9": { "min_score": 0.5, "action": "block" } }
 *   },
 *   "output_moderation": { "enabled": true, "on_error": "block" }
 * }
 * ```
 */
export interface PolicyDocument {
  /** The document format's version (not the stored policy's version number). Always 1. */
  readonly version: 1
  /** What happens when no enforced rule or filter matches. Never `redact` (redaction names PII kinds). */
  readonly default_action: Exclude<FrictionAction, 'redact'>
  /** In document order; all matching rules are considered, the most restrictive enforced one wins. */
  readonly rules: readonly PolicyRule[]
  /** Content-safety filters per S-code (GW-6): for prompts and for model outputs. */
  readonly filters: {
    readonly prompt: Readonly<Partial<Record<SafetyCode, PromptFilter>>>
    readonly output: Readonly<Partial<Record<SafetyCode, OutputFilter>>>
  }
  /** Output moderation: whether answers are screened with `filters.output`, and what to do when the detector fails. */
  readonly output_moderation: { readonly enabled: boolean; readonly on_error: 'block' | 'allow' }
}

/**
 * What a rule does when a detector one of its conditions needs has failed (`facts.errors`):
 * `block` (fail-closed, the default), `allow` (fail-open: the rule decides `allow`), or `skip`
 * (the rule is ignored). It applies only when every condition that does not need a failed
 * detector holds — a rule that cannot match anyway does not fail.
 */
export type OnError = 'block' | 'allow' | 'skip'

export interface PolicyRule {
  /** `[a-z0-9][a-z0-9_-]{0,63}`, unique in the document; recorded in the decision record. */
  readonly id: string
  /** Every condition given must hold (AND); a list matches when any of its values does (OR). `{}` matches every request. */
  readonly when: RuleConditions
  readonly action: FrictionAction
  /** A reason code `[a-z][a-z0-9_]{0,63}`: recorded, shown to clients, never free text. */
  readonly reason: string
  readonly on_error: OnError
  /** Evaluate and record (`decision.shadow`), do not enforce. */
  readonly shadow: boolean
}

export interface RuleConditions {
  readonly domains?: readonly Domain[]
  readonly intents?: readonly Intent[]
  /** Any finding of one of `codes` at or above the threshold (none given: any finding of those codes). */
  readonly safety?: { readonly codes: readonly SafetyCode[]; readonly min_severity?: Severity; readonly min_score?: number }
  /**
   * PII findings of `kinds` (omitted: any kind) with at least `min_confidence`, totalling at least
   * `min_count` (default 1). A `redact` rule redacts exactly the kinds it matched.
   */
  readonly pii?: { readonly kinds?: readonly PiiKind[]; readonly min_count?: number; readonly min_confidence?: number }
  /** Whether the prompt-injection detector fired. */
  readonly prompt_injection?: boolean
  /** At least `min_count` attachments (default 1), any of `mime_types` (`image/*` allowed), any of `image_labels`. */
  readonly attachments?: { readonly min_count?: number; readonly mime_types?: readonly string[]; readonly image_labels?: readonly string[] }
  /** The caller's org role (a key without a member has no role and matches no `roles` condition). */
  readonly roles?: readonly string[]
  readonly cohorts?: readonly string[]
}

interface Threshold {
  /** Exactly one of `min_severity` and `min_score`. */
  readonly min_severity?: Severity
  readonly min_score?: number
}

export interface PromptFilter extends Threshold {
  readonly action: Exclude<FrictionAction, 'redact'>
  readonly on_error: OnError
  readonly shadow: boolean
}

export interface OutputFilter extends Threshold {
  readonly action: 'block' | 'allow'
  readonly shadow: boolean
}

/** Rule ids and filter ids never collide: filter ids contain a dot (`prompt.S9`, `output.S9`). */
export const RULE_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/
export const REASON = /^[a-z][a-z0-9_]{0,63}$/
export const COHORT = /^[a-z0-9][a-z0-9_.-]{0,63}$/
export const MIME_TYPE = /^[a-z]+\/(\*|[a-z0-9][a-z0-9.+-]{0,126})$/
export const IMAGE_LABEL = /^[a-z0-9][a-z0-9_ -]{0,63}$/

/** Limits that keep a document small and its evaluation well under a millisecond. */
export const LIMITS = { rules: 200, listItems: 64, problems: 100 } as const

/** The id under which a filter appears in decisions: `prompt.S9`, `output.S1`. */
export function filterId(stage: 'prompt' | 'output', code: SafetyCode): string {
  return `${stage}.${code}`
}
