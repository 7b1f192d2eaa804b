// Policy evaluation micro-benchmark (GW-4: "a policy that needs no model adds ≤ 1 ms").
//   node --import tsx bench/policy.ts [runs]
// Prints mean and p50/p99 per evaluation for the built-in default policy and for a 100-rule
// policy that uses every condition kind, against varied facts. No I/O besides the report.
import { PII_KINDS, SAFETY_CODES, type Facts, type PiiKind, type SafetyCode, type Severity } from '../src/classify/facts.ts'
import { DEFAULT_POLICY } from '../src/policy/default-policy.ts'
import type { PolicyDocument } from '../src/policy/document.ts'
import { evaluateOutput, evaluatePolicy } from '../src/policy/evaluate.ts'
import type { PolicySubject } from '../src/policy/types.ts'
import { validatePolicy } from '../src/policy/validate.ts'

const ACTIONS = ['allow', 'challenge', 'redact', 'block', 'block'] as const

export function largePolicy(rules = 100): PolicyDocument {
  const doc = {
    version: 1,
    default_action: 'allow',
    rules: Array.from({ length: rules }, (_, i) => ({
      id: `rule-${i}`,
      when: [
        { domains: ['medical', 'legal', 'finance'], intents: ['do_it'] },
        { safety: { codes: ['S1', 'S2', 'S5', 'S10'], min_score: 0.4 + (i % 5) / 10 }, roles: ['MEMBER', 'ANALYST'] },
        { pii: { kinds: ['EMAIL_ADDRESS', 'PHONE_NUMBER', 'US_SSN'], min_count: 1 + (i % 3) } },
        { attachments: { mime_types: ['image/*', 'text/csv'], image_labels: ['passport', 'id_document'] }, cohorts: ['students', `c${i}`] },
        { prompt_injection: true, domains: ['coding'] },
      ][i % 5],
      action: ACTIONS[i % 5], // index 2 is the pii condition: redact needs it
      reason: `reason_${i}`,
      on_error: ['block', 'allow', 'skip'][i % 3],
      shadow: i % 7 === 0,
    })),
    filters: {
      prompt: Object.fromEntries(SAFETY_CODES.map((c, i) => [c, i % 2 ? { min_score: 0.5, action: 'block' } : { min_severity: 'medium', action: 'challenge' }])),
      output: Object.fromEntries(SAFETY_CODES.map((c) => [c, { min_severity: 'high', action: 'block' }])),
    },
  }
  const r = validatePolicy(doc)
  if (!r.ok) throw new Error(JSON.stringify(r.problems))
  return r.doc
}

const finding = (code: SafetyCode, severity: Severity, score: number) => ({ code, severity, score, source: 'rules' as const })
const pii = (kind: PiiKind, count: number) => ({ kind, count, confidence: 0.99, spans: [] })

export function variedFacts(i: number): Facts {
  return {
    domain: (['coding', 'medical', 'legal', 'other'] as const)[i % 4]!,
    domainScore: 0.9, domainMargin: 0.4,
    intent: (['do_it', 'learn', 'debug'] as const)[i % 3]!,
    intentScore: 0.8,
    safety: i % 2 ? [finding('S2', 'medium', 0.55), finding('S10', 'low', 0.3)] : [],
    promptInjection: i % 11 === 0,
    pii: PII_KINDS.slice(0, i % 6).map((k) => pii(k, 1 + (i % 3))),
    attachments: i % 3 ? { count: 2, mimeTypes: ['image/png', 'text/csv'], imageLabels: ['passport'] } : { count: 0, mimeTypes: [], imageLabels: [] },
    classifier: 'bench', latencyMs: 0,
    errors: i % 13 === 0 ? ['pii'] : [],
  }
}

const SUBJECTS: PolicySubject[] = [
  { role: 'MEMBER', cohorts: ['students'], environment: 'production' },
  { role: 'OWNER', cohorts: [], environment: 'production' },
  { role: null, cohorts: [], environment: 'sandbox' },
]

/** Mean and percentiles per evaluation (evaluatePolicy + evaluateOutput), in microseconds. */
export function measure(doc: PolicyDocument, runs: number): { meanUs: number; p50Us: number; p99Us: number } {
  const inputs = Array.from({ length: 64 }, (_, i) => variedFacts(i))
  let sink = 0
  for (let i = 0; i < Math.min(runs, 10_000); i++) sink += evaluatePolicy(doc, inputs[i % 64]!, SUBJECTS[i % 3]!).shadow.length
  const batch = 100
  const perBatch: number[] = []
  const t0 = performance.now()
  for (let b = 0; b < Math.ceil(runs / batch); b++) {
    const s = performance.now()
    for (let i = 0; i < batch; i++) {
      const n = b * batch + i
      sink += evaluatePolicy(doc, inputs[n % 64]!, SUBJECTS[n % 3]!).redact.length
      sink += evaluateOutput(doc, inputs[n % 64]!).shadow.length
    }
    perBatch.push(((performance.now() - s) / batch) * 1000)
  }
  const meanUs = ((performance.now() - t0) / (Math.ceil(runs / batch) * batch)) * 1000
  perBatch.sort((a, b) => a - b)
  if (sink < 0) console.log(sink)
  return { meanUs, p50Us: perBatch[Math.floor(perBatch.length / 2)]!, p99Us: perBatch[Math.floor(perBatch.length * 0.99)]! }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const runs = Number(process.argv[2] ?? 100_000)
  for (const [name, doc] of [['default policy', DEFAULT_POLICY], ['100-rule policy', largePolicy()]] as const) {
    const r = measure(doc, runs)
    console.log(`${name.padEnd(16)} mean ${r.meanUs.toFixed(2)} µs   p50 ${r.p50Us.toFixed(2)} µs   p99 ${r.p99Us.toFixed(2)} µs   (per evaluation, ${runs} runs, batches of 100)`)
  }
}
