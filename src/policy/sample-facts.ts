import { DOMAINS, INTENTS, PII_KINDS, SAFETY_CODES, SEVERITIES, type Detector, type Facts } from '../classify/facts.ts'
import { IMAGE_LABEL, MIME_TYPE } from './document.ts'
import type { PolicyProblem } from './validate.ts'

const DETECTORS: readonly Detector[] = ['domain', 'intent', 'safety', 'pii', 'injection', 'image']

/**
 * Facts given directly instead of a prompt, for sandbox tests that must not depend on a
 * classifier (the CLI, the API's `facts` samples): the same snake_case shape a test result
 * prints (`FactsJson`), every field optional — domain `other`, intent `do_it`, scores 1, no
 * findings, no attachments, no errors. Problems carry paths under `path`; nothing is echoed.
 */
export function factsFromJson(input: unknown, path = '$'): { ok: true; facts: Facts } | { ok: false; problems: PolicyProblem[] } {
  const problems: PolicyProblem[] = []
  const bad = (p: string, message: string) => {
    if (problems.length < 50) problems.push({ path: p, message })
    return undefined
  }
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
  const known = (o: Record<string, unknown>, p: string, allowed: readonly string[]) => {
    for (const k of Object.keys(o)) if (!allowed.includes(k)) bad(/^[A-Za-z0-9_]{1,64}$/.test(k) ? `${p}.${k}` : p, `is not a known field (allowed: ${allowed.join(', ')})`)
  }
  const oneOf = <T extends string>(v: unknown, p: string, allowed: readonly T[], dflt: T): T =>
    v === undefined ? dflt : typeof v === 'string' && (allowed as readonly string[]).includes(v) ? (v as T) : (bad(p, `must be one of: ${allowed.join(', ')}`), dflt)
  const num = (v: unknown, p: string, min: number, max: number, dflt: number, integer = false): number =>
    v === undefined ? dflt : typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max && (!integer || Number.isInteger(v)) ? v : (bad(p, `must be a ${integer ? 'whole ' : ''}number from ${min} to ${max}`), dflt)
  const list = (v: unknown, p: string): unknown[] => (v === undefined ? [] : Array.isArray(v) && v.length <= 64 ? v : (bad(p, 'must be a list of at most 64 items'), []))

  if (!isObj(input)) return { ok: false, problems: [{ path, message: 'must be an object' }] }
  known(input, path, ['domain', 'domain_score', 'intent', 'intent_score', 'safety', 'pii', 'prompt_injection', 'attachments', 'errors', 'classifier'])
  const safety = list(input['safety'], `${path}.safety`).map((s, i) => {
    const p = `${path}.safety[${i}]`
    if (!isObj(s)) return bad(p, 'must be an object')
    known(s, p, ['code', 'severity', 'score'])
    if (s['code'] === undefined) bad(`${p}.code`, 'is required')
    return { code: oneOf(s['code'], `${p}.code`, SAFETY_CODES, 'S1'), severity: oneOf(s['severity'], `${p}.severity`, SEVERITIES, 'high'), score: num(s['score'], `${p}.score`, 0, 1, 1), source: 'rules' as const }
  })
  const pii = list(input['pii'], `${path}.pii`).map((f, i) => {
    const p = `${path}.pii[${i}]`
    if (!isObj(f)) return bad(p, 'must be an object')
    known(f, p, ['kind', 'count', 'confidence'])
    if (f['kind'] === undefined) bad(`${p}.kind`, 'is required')
    return { kind: oneOf(f['kind'], `${p}.kind`, PII_KINDS, 'EMAIL_ADDRESS'), count: num(f['count'], `${p}.count`, 1, 1_000_000, 1, true), confidence: num(f['confidence'], `${p}.confidence`, 0, 1, 1), spans: [] }
  })
  let attachments = { count: 0, mimeTypes: [] as string[], imageLabels: [] as string[] }
  if (input['attachments'] !== undefined) {
    const a = input['attachments']
    const p = `${path}.attachments`
    if (!isObj(a)) bad(p, 'must be an object')
    else {
      known(a, p, ['count', 'mime_types', 'image_labels'])
      const strings = (v: unknown, q: string, re: RegExp, what: string) => list(v, q).filter((s, i): s is string => (typeof s === 'string' && re.test(s)) || (bad(`${q}[${i}]`, `must be ${what}`), false))
      const mimeTypes = strings(a['mime_types'], `${p}.mime_types`, MIME_TYPE, 'a lowercase MIME type')
      const imageLabels = strings(a['image_labels'], `${p}.image_labels`, IMAGE_LABEL, 'an image label')
      attachments = { count: num(a['count'], `${p}.count`, 0, 1000, mimeTypes.length, true), mimeTypes, imageLabels }
    }
  }
  const errors = list(input['errors'], `${path}.errors`).map((e, i) => oneOf(e, `${path}.errors[${i}]`, DETECTORS, 'domain'))
  const injection = input['prompt_injection']
  if (injection !== undefined && typeof injection !== 'boolean') bad(`${path}.prompt_injection`, 'must be true or false')
  if (input['classifier'] !== undefined && typeof input['classifier'] !== 'string') bad(`${path}.classifier`, 'must be a string')
  const facts: Facts = {
    domain: oneOf(input['domain'], `${path}.domain`, DOMAINS, 'other'),
    domainScore: num(input['domain_score'], `${path}.domain_score`, 0, 1, 1),
    domainMargin: 1,
    intent: oneOf(input['intent'], `${path}.intent`, INTENTS, 'do_it'),
    intentScore: num(input['intent_score'], `${path}.intent_score`, 0, 1, 1),
    safety: safety.filter((s) => s !== undefined),
    promptInjection: injection === true,
    pii: pii.filter((f) => f !== undefined),
    attachments,
    classifier: 'given',
    latencyMs: 0,
    errors: [...new Set(errors)],
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, facts }
}
