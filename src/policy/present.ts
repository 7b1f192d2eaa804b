import type { Facts } from '../classify/facts.ts'
import type { PolicyDecision } from './types.ts'

/**
 * The JSON shapes of a sandbox test result (API and CLI): labels, scores, codes and counts —
 * never text, never PII spans. Stable: fields are only ever added.
 */
export interface DecisionJson {
  action: string
  rule_id: string | null
  reason: string | null
  redact: string[]
  shadow: { rule_id: string; action: string }[]
  failed_detectors: string[]
  output: { screen: boolean; action: string }
}

export interface FactsJson {
  domain: string
  domain_score: number
  intent: string
  intent_score: number
  safety: { code: string; severity: string; score: number }[]
  pii: { kind: string; count: number }[]
  prompt_injection: boolean
  attachments: { count: number; mime_types: string[]; image_labels: string[] }
  classifier: string
  errors: string[]
}

export function decisionJson(d: PolicyDecision): DecisionJson {
  return {
    action: d.action, rule_id: d.ruleId, reason: d.reason, redact: [...d.redact],
    shadow: d.shadow.map((s) => ({ rule_id: s.ruleId, action: s.action })),
    failed_detectors: [...d.failedDetectors], output: { screen: d.output.screen, action: d.output.action },
  }
}

const round = (n: number) => Math.round(n * 1000) / 1000

/** A summary of the facts the decision was taken on (no spans: they point into the text). */
export function factsJson(f: Facts): FactsJson {
  return {
    domain: f.domain, domain_score: round(f.domainScore), intent: f.intent, intent_score: round(f.intentScore),
    safety: f.safety.map((s) => ({ code: s.code, severity: s.severity, score: round(s.score) })),
    pii: f.pii.map((p) => ({ kind: p.kind, count: p.count })),
    prompt_injection: f.promptInjection,
    attachments: { count: f.attachments.count, mime_types: [...f.attachments.mimeTypes], image_labels: [...f.attachments.imageLabels] },
    classifier: f.classifier, errors: [...f.errors],
  }
}

/** JSON Schema of `DecisionJson` and `FactsJson`, for the admin API's response presenters. */
const STR = { type: 'string' } as const
const NSTR = { type: ['string', 'null'] } as const
const NUM = { type: 'number' } as const
const strings = { type: 'array', items: STR } as const
const obj = (properties: Record<string, unknown>) => ({ type: 'object', additionalProperties: false, required: Object.keys(properties), properties }) as const
export const DECISION_SCHEMA = obj({
  action: STR, rule_id: NSTR, reason: NSTR, redact: strings,
  shadow: { type: 'array', items: obj({ rule_id: STR, action: STR }) },
  failed_detectors: strings, output: obj({ screen: { type: 'boolean' }, action: STR }),
})
export const FACTS_SCHEMA = obj({
  domain: STR, domain_score: NUM, intent: STR, intent_score: NUM,
  safety: { type: 'array', items: obj({ code: STR, severity: STR, score: NUM }) },
  pii: { type: 'array', items: obj({ kind: STR, count: { type: 'integer' } }) },
  prompt_injection: { type: 'boolean' },
  attachments: obj({ count: { type: 'integer' }, mime_types: strings, image_labels: strings }),
  classifier: STR, errors: strings,
})
