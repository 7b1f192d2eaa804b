import assert from 'node:assert/strict'
import type { Classifier, ClassifierInput, Facts, PiiKind, SafetyCode, Severity } from '../../src/classify/facts.ts'
import type { PolicyDocument } from '../../src/policy/document.ts'
import type { PolicySubject } from '../../src/policy/types.ts'
import { validatePolicy } from '../../src/policy/validate.ts'

/** Facts for a plain request (coding, do_it, nothing found), with overrides. */
export function facts(over: Partial<Facts> = {}): Facts {
  return {
    domain: 'coding', domainScore: 0.9, domainMargin: 0.5, intent: 'do_it', intentScore: 0.9, safety: [], promptInjection: false, pii: [],
    attachments: { count: 0, mimeTypes: [], imageLabels: [] }, classifier: 'test', latencyMs: 0, errors: [], ...over,
  }
}

export const safety = (code: SafetyCode, severity: Severity = 'high', score = 0.9) => ({ code, severity, score, source: 'rules' as const })
export const pii = (kind: PiiKind, count = 1, confidence = 0.99) => ({ kind, count, confidence, spans: [] })

export const subject = (over: Partial<PolicySubject> = {}): PolicySubject => ({ role: null, cohorts: [], environment: 'sandbox', ...over })

/** A valid document from a partial one (version 1, default allow, no rules unless given). */
export function policy(partial: Record<string, unknown> = {}): PolicyDocument {
  const r = validatePolicy({ version: 1, default_action: 'allow', rules: [], ...partial })
  if (!r.ok) assert.fail(`fixture policy invalid: ${JSON.stringify(r.problems)}`)
  return r.doc
}

/**
 * A classifier for tests: reads the (test-only) prompt for marker words and answers fixed facts.
 * `[weapons]` → S9 high; `[email]` → one EMAIL_ADDRESS; `[medical]` → domain medical; `[fail:pii]` → the PII detector failed.
 */
export function markerClassifier(): Classifier & { calls: number } {
  const c = {
    name: 'markers',
    calls: 0,
    async classify(input: ClassifierInput): Promise<Facts> {
      c.calls++
      // Test code may read its own fake prompt: this stands in for classify/.
      const text = input.segments.map((s) => s.reveal()).join('\n')
      return facts({
        domain: text.includes('[medical]') ? 'medical' : 'coding',
        safety: text.includes('[weapons]') ? [safety('S9', 'high', 0.95)] : [],
        pii: text.includes('[email]') ? [pii('EMAIL_ADDRESS')] : [],
        errors: text.includes('[fail:pii]') ? ['pii'] : [],
        classifier: 'markers',
      })
    },
    async close() {},
  }
  return c
}
