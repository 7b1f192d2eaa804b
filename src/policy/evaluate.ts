import { PII_KINDS, SAFETY_CODES, SAFETY_NAMES, type Detector, type Facts, type PiiKind, type SafetyCode, type SafetyFinding, type Severity } from '../classify/facts.ts'
import { filterId, type OnError, type PolicyDocument, type PolicyRule, type RuleConditions } from './document.ts'
import type { FrictionAction, PolicyDecision, PolicySubject } from './types.ts'

/** block > challenge > redact > allow. */
const RANK: Readonly<Record<FrictionAction, number>> = { allow: 0, redact: 1, challenge: 2, block: 3 }
const SEVERITY_RANK: Readonly<Record<Severity, number>> = { low: 0, medium: 1, high: 2 }

/** The reason code of a decision taken by a failure mode (which detectors: `decision.failedDetectors`). */
export const DETECTOR_ERROR_REASON = 'detector_error'

/** The reason code of a safety filter: `safety_` + the category's name, e.g. `safety_indiscriminate_weapons`. */
export function safetyReason(code: SafetyCode): string {
  return `safety_${SAFETY_NAMES[code]}`
}

/** How one rule or filter came out for this request. */
type Outcome =
  | { readonly kind: 'no' }
  | { readonly kind: 'match'; readonly redact: readonly PiiKind[] }
  | { readonly kind: 'failed'; readonly detectors: readonly Detector[] }

const NO: Outcome = { kind: 'no' }
const MATCH: Outcome = { kind: 'match', redact: [] }

interface Candidate {
  readonly id: string
  readonly action: FrictionAction
  readonly reason: string
  readonly redact: readonly PiiKind[]
  readonly failed: readonly Detector[]
}

/**
 * Turns facts about a request into a friction decision (GW-4, GW-6, GW-7). Pure: no I/O, no
 * clock, no randomness — the same inputs always give the same decision.
 *
 * - Every rule and prompt filter is evaluated. Among the **enforced** ones that match, the most
 *   restrictive action wins (block > challenge > redact > allow); on a tie the first in document
 *   order (rules, then filters in S-code order) names the rule and reason. With no enforced
 *   match, `default_action` applies (`ruleId` and `reason` null).
 * - `redact` is the union of the kinds matched by enforced `redact` rules, kept when the outcome
 *   is `redact` or `challenge` (nothing is forwarded under `block`).
 * - Shadow rules and filters that match are listed in `shadow` with the action they would have
 *   taken; they never change the outcome.
 * - Failure modes: a rule whose conditions need a detector listed in `facts.errors` — and whose
 *   other conditions all hold — applies its `on_error` (block by default, fail-closed; allow;
 *   or skip). `failedDetectors` lists the failed detectors behind the winning action.
 */
export function evaluatePolicy(doc: PolicyDocument, facts: Facts, subject: PolicySubject): PolicyDecision {
  // Plain loops and a class, no closures: under tsx every function expression created per call
  // is wrapped in a naming helper, which would cost more than the evaluation itself.
  const tally = new Tally()
  for (const rule of doc.rules) tally.consider(rule.id, matchRule(rule, facts, subject), rule.action, rule.reason, rule.on_error, rule.shadow)

  const safetyFailed = facts.errors.includes('safety')
  for (const code of SAFETY_CODES) {
    const f = doc.filters.prompt[code]
    if (f === undefined) continue
    const outcome: Outcome = safetyFailed ? SAFETY_FAILED : safetyHit(facts.safety, code, undefined, f.min_severity, f.min_score) ? MATCH : NO
    tally.consider(PROMPT_FILTER_IDS[code], outcome, f.action, SAFETY_REASONS[code], f.on_error, f.shadow)
  }

  const winner = tally.winner
  const action: FrictionAction = winner?.action ?? doc.default_action
  let redact: PiiKind[] = []
  let failedDetectors: Detector[] = []
  if (winner !== undefined) {
    const redactLists: (readonly PiiKind[])[] = []
    const failedLists: (readonly Detector[])[] = []
    for (const c of tally.enforced) {
      if (c.action === 'redact') redactLists.push(c.redact)
      if (c.action === action) failedLists.push(c.failed)
    }
    if (action === 'redact' || action === 'challenge') redact = union(PII_KINDS, redactLists)
    failedDetectors = union(DETECTORS, failedLists)
  }
  return {
    action,
    ruleId: winner?.id ?? null,
    reason: winner?.reason ?? null,
    redact,
    shadow: tally.shadow,
    failedDetectors,
    output: outputPlan(doc),
  }
}

/** The rules and filters that matched, as the evaluation goes. */
class Tally {
  winner: Candidate | undefined = undefined
  readonly enforced: Candidate[] = []
  readonly shadow: { ruleId: string; action: FrictionAction }[] = []

  consider(id: string, outcome: Outcome, action: FrictionAction, reason: string, onError: OnError, isShadow: boolean): void {
    if (outcome.kind === 'no') return
    let c: Candidate
    if (outcome.kind === 'failed') {
      if (onError === 'skip') return
      c = { id, action: onError, reason: DETECTOR_ERROR_REASON, redact: EMPTY, failed: outcome.detectors }
    } else {
      c = { id, action, reason, redact: action === 'redact' ? outcome.redact : EMPTY, failed: EMPTY }
    }
    if (isShadow) {
      this.shadow.push({ ruleId: id, action: c.action })
      return
    }
    this.enforced.push(c)
    if (this.winner === undefined || RANK[c.action] > RANK[this.winner.action]) this.winner = c
  }
}

const EMPTY: readonly never[] = Object.freeze([])
const SAFETY_FAILED: Outcome = { kind: 'failed', detectors: ['safety'] }
const PROMPT_FILTER_IDS = Object.fromEntries(SAFETY_CODES.map((c) => [c, filterId('prompt', c)])) as Record<SafetyCode, string>
const OUTPUT_FILTER_IDS = Object.fromEntries(SAFETY_CODES.map((c) => [c, filterId('output', c)])) as Record<SafetyCode, string>
const SAFETY_REASONS = Object.fromEntries(SAFETY_CODES.map((c) => [c, safetyReason(c)])) as Record<SafetyCode, string>

/** The verdict on a model's answer (GW-6): `allow` or `block`, which output filter decided and why. */
export interface OutputDecision {
  readonly action: 'block' | 'allow'
  readonly ruleId: string | null
  readonly reason: string | null
  readonly shadow: readonly { readonly ruleId: string; readonly action: 'block' | 'allow' }[]
  readonly failedDetectors: readonly Detector[]
}

/**
 * Screens a model's answer against `filters.output` (GW-6): `facts` are the classifier's facts
 * about the output text. Pure. With output moderation off, always `allow`. When the safety
 * detector failed, `output_moderation.on_error` decides (block by default, fail-closed).
 */
export function evaluateOutput(doc: PolicyDocument, facts: Pick<Facts, 'safety' | 'errors'>): OutputDecision {
  const shadow: { ruleId: string; action: 'block' | 'allow' }[] = []
  const none: OutputDecision = { action: 'allow', ruleId: null, reason: null, shadow, failedDetectors: [] }
  if (!doc.output_moderation.enabled) return none
  let hasFilter = false
  let winner: { id: string; action: 'block' | 'allow'; reason: string } | undefined
  for (const code of SAFETY_CODES) {
    const f = doc.filters.output[code]
    if (f === undefined) continue
    hasFilter = true
    if (facts.errors.includes('safety')) continue
    if (!safetyHit(facts.safety, code, undefined, f.min_severity, f.min_score)) continue
    if (f.shadow) shadow.push({ ruleId: OUTPUT_FILTER_IDS[code], action: f.action })
    else if (winner === undefined || (f.action === 'block' && winner.action === 'allow')) winner = { id: OUTPUT_FILTER_IDS[code], action: f.action, reason: SAFETY_REASONS[code] }
  }
  if (hasFilter && facts.errors.includes('safety')) {
    return { action: doc.output_moderation.on_error, ruleId: null, reason: DETECTOR_ERROR_REASON, shadow, failedDetectors: ['safety'] }
  }
  return winner ? { action: winner.action, ruleId: winner.id, reason: winner.reason, shadow, failedDetectors: [] } : none
}

/**
 * Whether answers need screening (moderation on and at least one output filter), and what an
 * enforced filter does on a hit (`block` if any does): a stream that may be blocked must be screened
 * before it is released. The verdict on one answer is `evaluateOutput`.
 */
function outputPlan(doc: PolicyDocument): PolicyDecision['output'] {
  if (!doc.output_moderation.enabled) return { screen: false, action: 'allow' }
  let screen = false
  let action: 'block' | 'allow' = 'allow'
  for (const code of SAFETY_CODES) {
    const f = doc.filters.output[code]
    if (f === undefined) continue
    screen = true
    if (!f.shadow && f.action === 'block') action = 'block'
  }
  return { screen, action }
}

const DETECTORS: readonly Detector[] = ['domain', 'intent', 'safety', 'pii', 'injection', 'image']

/**
 * One rule against one request. Conditions that need a failed detector are set aside; if any
 * other condition fails the rule simply does not match, otherwise the failure mode applies.
 */
function matchRule(rule: Pick<PolicyRule, 'when'>, facts: Facts, subject: PolicySubject): Outcome {
  const w: RuleConditions = rule.when
  const errors = facts.errors
  let failed: Detector[] | undefined

  if (w.roles !== undefined && (subject.role === null || !w.roles.includes(subject.role))) return NO
  if (w.cohorts !== undefined && !overlaps(w.cohorts, subject.cohorts)) return NO
  if (w.attachments !== undefined) {
    const a = w.attachments
    if (facts.attachments.count < (a.min_count ?? 1)) return NO
    if (a.mime_types !== undefined && !anyMime(a.mime_types, facts.attachments.mimeTypes)) return NO
    if (a.image_labels !== undefined) {
      if (errors.includes('image')) failed = addDetector(failed, 'image')
      else if (!overlaps(a.image_labels, facts.attachments.imageLabels)) return NO
    }
  }
  if (w.domains !== undefined) {
    if (errors.includes('domain')) failed = addDetector(failed, 'domain')
    else if (!w.domains.includes(facts.domain)) return NO
  }
  if (w.intents !== undefined) {
    if (errors.includes('intent')) failed = addDetector(failed, 'intent')
    else if (!w.intents.includes(facts.intent)) return NO
  }
  if (w.prompt_injection !== undefined) {
    if (errors.includes('injection')) failed = addDetector(failed, 'injection')
    else if (facts.promptInjection !== w.prompt_injection) return NO
  }
  if (w.safety !== undefined) {
    if (errors.includes('safety')) failed = addDetector(failed, 'safety')
    else if (!safetyHit(facts.safety, undefined, w.safety.codes, w.safety.min_severity, w.safety.min_score)) return NO
  }
  let redact: PiiKind[] | undefined
  if (w.pii !== undefined) {
    if (errors.includes('pii')) failed = addDetector(failed, 'pii')
    else {
      const p = w.pii
      let total = 0
      for (const f of facts.pii) {
        if (p.kinds !== undefined && !p.kinds.includes(f.kind)) continue
        if (p.min_confidence !== undefined && f.confidence < p.min_confidence) continue
        if (f.count <= 0) continue
        total += f.count
        if (redact === undefined) redact = [f.kind]
        else if (!redact.includes(f.kind)) redact.push(f.kind)
      }
      if (total < (p.min_count ?? 1)) return NO
    }
  }
  if (failed !== undefined) return { kind: 'failed', detectors: failed }
  return redact === undefined ? MATCH : { kind: 'match', redact }
}

function addDetector(list: Detector[] | undefined, d: Detector): Detector[] {
  if (list === undefined) return [d]
  if (!list.includes(d)) list.push(d)
  return list
}

function overlaps(wanted: readonly string[], present: readonly string[]): boolean {
  for (const x of present) if (wanted.includes(x)) return true
  return false
}

/** A finding of `code` (or of one of `codes`) at or above the threshold. */
function safetyHit(findings: readonly SafetyFinding[], code: SafetyCode | undefined, codes: readonly SafetyCode[] | undefined, minSeverity: Severity | undefined, minScore: number | undefined): boolean {
  for (const f of findings) {
    if (code !== undefined ? f.code !== code : !codes!.includes(f.code)) continue
    if (minSeverity !== undefined && SEVERITY_RANK[f.severity] < SEVERITY_RANK[minSeverity]) continue
    if (minScore !== undefined && f.score < minScore) continue
    return true
  }
  return false
}

function anyMime(patterns: readonly string[], mimes: readonly string[]): boolean {
  for (const m of mimes) if (mimeMatches(patterns, m)) return true
  return false
}

function mimeMatches(patterns: readonly string[], mime: string): boolean {
  const m = mime.toLowerCase()
  for (const p of patterns) {
    if (p === m) return true
    if (p.endsWith('/*') && m.startsWith(p.slice(0, -1))) return true
  }
  return false
}

/** The union of several lists, in the canonical order of `order`. */
function union<T>(order: readonly T[], lists: readonly (readonly T[])[]): T[] {
  const out: T[] = []
  for (const x of order) {
    for (const l of lists) {
      if (l.includes(x)) {
        out.push(x)
        break
      }
    }
  }
  return out
}

const MODEL_SCORE = 0.65
const needsModelCache = new WeakMap<PolicyDocument, boolean>()

/**
 * Whether evaluating `doc` needs the embedding model: a rule (enforced or shadow) on domains,
 * intents or image labels, or a prompt safety threshold low enough for the model's harm hints
 * (low severity, scores ≤ 0.6). Otherwise the cheap detectors decide alone (rules, PII, cues).
 */
export function needsModel(doc: PolicyDocument): boolean {
  const hit = needsModelCache.get(doc)
  if (hit !== undefined) return hit
  const lowSafety = (t: { min_severity?: string; min_score?: number } | undefined) => t !== undefined && (t.min_severity === 'low' || (t.min_score !== undefined && t.min_score < MODEL_SCORE))
  let needs = false
  for (const r of doc.rules) {
    const w = r.when
    if (w.domains || w.intents || (w.attachments?.image_labels?.length ?? 0) > 0 || (w.safety && (lowSafety(w.safety) || (w.safety.min_severity === undefined && w.safety.min_score === undefined)))) needs = true
  }
  for (const f of Object.values(doc.filters.prompt)) if (lowSafety(f)) needs = true
  needsModelCache.set(doc, needs)
  return needs
}
