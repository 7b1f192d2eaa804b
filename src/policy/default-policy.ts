import type { PolicyDocument } from './document.ts'
import { validatePolicy } from './validate.ts'

/**
 * What an org gets until it promotes a policy of its own (and what sandbox uses until one is
 * activated there):
 *
 * - **PII redaction on** (GW-7): every PII kind the detector finds is replaced before anything is
 *   forwarded. If the PII detector fails, the request is blocked (fail-closed).
 * - **Must-not-miss safety categories blocked** (GW-6), in prompts and in outputs: child sexual
 *   exploitation (S4), indiscriminate weapons (S9) and sex-related crimes (S3) from medium
 *   severity (the reviewed phrase rules and lexicon); violent crimes (S1) at high. The embedding's
 *   low-severity harm hints are recorded as finding codes, never block by themselves: they
 *   over-flag hard negatives (research/embedded-ml.md). If the safety detector fails, the request (or the
 *   answer) is blocked. Suicide and self-harm (S11) is deliberately not blocked: a blocked request
 *   gives a person in crisis an error, while the model can answer with care; its finding codes
 *   are still recorded.
 * - **No challenges**: nothing asks for reasoning until an org writes a rule that does.
 * - Everything else is allowed.
 */
const DEFAULT_DOCUMENT = {
  version: 1,
  default_action: 'allow',
  rules: [
    { id: 'redact-pii', when: { pii: {} }, action: 'redact', reason: 'pii_redacted', on_error: 'block', shadow: false },
  ],
  filters: {
    prompt: {
      S1: { min_severity: 'high', action: 'block', on_error: 'block', shadow: false },
      S3: { min_severity: 'medium', action: 'block', on_error: 'block', shadow: false },
      S4: { min_severity: 'medium', action: 'block', on_error: 'block', shadow: false },
      S9: { min_severity: 'medium', action: 'block', on_error: 'block', shadow: false },
    },
    output: {
      S1: { min_severity: 'high', action: 'block', shadow: false },
      S3: { min_severity: 'medium', action: 'block', shadow: false },
      S4: { min_severity: 'medium', action: 'block', shadow: false },
      S9: { min_severity: 'medium', action: 'block', shadow: false },
    },
  },
  output_moderation: { enabled: true, on_error: 'block' },
}

function build(): PolicyDocument {
  const r = validatePolicy(DEFAULT_DOCUMENT)
  if (!r.ok) throw new Error(`the built-in default policy is invalid: ${r.problems.map((p) => `${p.path} ${p.message}`).join('; ')}`)
  return r.doc
}

/** The built-in default policy, validated and deep-frozen. */
export const DEFAULT_POLICY: PolicyDocument = build()
