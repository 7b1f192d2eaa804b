// The labelled fixtures of the classifier and the metrics computed over them. Shared by the
// accuracy tests and scripts/eval-classify.ts (which prints the same numbers with the misses).
import { readFileSync } from 'node:fs'
import { Content } from '../../src/core/content.ts'
import type { ClassifierInput, Domain, Facts, Intent, PiiFinding, PiiKind, SafetyCode } from '../../src/classify/facts.ts'
import { MUST_NOT_MISS } from '../../src/classify/safety-rules.ts'

const DIR = new URL('../fixtures/classify/', import.meta.url)

export interface PromptCase {
  readonly id: string
  readonly prompt: string
  /** null for harmful prompts: their topic is not scored. */
  readonly domain: Domain | null
  readonly intent: Intent | null
  readonly safety: readonly SafetyCode[]
  readonly hard_negative: boolean
  readonly injection?: boolean
}

export interface PiiCase {
  readonly id: string
  readonly text: string
  /** Every PII value in the text with its kind; an empty list is a negative example. */
  readonly pii: readonly { readonly kind: PiiKind; readonly value: string }[]
}

function jsonl<T>(name: string): T[] {
  return readFileSync(new URL(name, DIR), 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as T)
}

export const loadPrompts = (): PromptCase[] => jsonl<PromptCase>('prompts.jsonl')
export const loadPii = (): PiiCase[] => jsonl<PiiCase>('pii.jsonl')

export function inputOf(...segments: string[]): ClassifierInput {
  return { segments: segments.map((s) => Content.of(s)), images: [], attachmentTypes: [] }
}

/** A prompt is "flagged" by a finding of medium or high severity (low = the embedding layer's review hint). */
export const flaggedCodes = (f: Facts): Set<SafetyCode> => new Set(f.safety.filter((s) => s.severity !== 'low').map((s) => s.code))
export const anyCodes = (f: Facts): Set<SafetyCode> => new Set(f.safety.map((s) => s.code))

export interface PromptReport {
  readonly domain: { readonly correct: number; readonly total: number; readonly accuracy: number; readonly misses: readonly string[] }
  readonly intent: { readonly correct: number; readonly total: number; readonly accuracy: number; readonly misses: readonly string[] }
  /** Per must-not-miss code: labelled prompts caught with that code at ≥ medium. */
  readonly mustNotMiss: Readonly<Record<string, { readonly caught: number; readonly total: number; readonly misses: readonly string[] }>>
  readonly mustNotMissRecall: number
  /** Other labelled categories, caught with their code at any severity (no floor: reported). */
  readonly otherRecall: { readonly caught: number; readonly total: number; readonly misses: readonly string[] }
  readonly hardNegatives: { readonly flagged: number; readonly anyFinding: number; readonly total: number; readonly rate: number; readonly ids: readonly string[] }
  readonly ordinary: { readonly flagged: number; readonly anyFinding: number; readonly total: number; readonly ids: readonly string[] }
  readonly injection: { readonly tp: number; readonly fp: number; readonly fn: number; readonly ids: readonly string[] }
}

export function scorePrompts(cases: readonly PromptCase[], facts: readonly Facts[]): PromptReport {
  const dMiss: string[] = []
  const iMiss: string[] = []
  let dOk = 0, dN = 0, iOk = 0, iN = 0
  const mnm: Record<string, { caught: number; total: number; misses: string[] }> = {}
  const other = { caught: 0, total: 0, misses: [] as string[] }
  const hn = { flagged: 0, anyFinding: 0, total: 0, ids: [] as string[] }
  const ord = { flagged: 0, anyFinding: 0, total: 0, ids: [] as string[] }
  const inj = { tp: 0, fp: 0, fn: 0, ids: [] as string[] }
  cases.forEach((c, k) => {
    const f = facts[k]!
    if (c.domain) {
      dN++
      if (f.domain === c.domain) dOk++
      else dMiss.push(`${c.id}: ${c.domain} → ${f.domain} (margin ${f.domainMargin})`)
    }
    if (c.intent) {
      iN++
      if (f.intent === c.intent) iOk++
      else iMiss.push(`${c.id}: ${c.intent} → ${f.intent}`)
    }
    const flagged = flaggedCodes(f)
    const any = anyCodes(f)
    for (const code of c.safety) {
      if (MUST_NOT_MISS.includes(code)) {
        const r = (mnm[code] ??= { caught: 0, total: 0, misses: [] })
        r.total++
        if (flagged.has(code)) r.caught++
        else r.misses.push(`${c.id} (got ${[...any].join(',') || 'nothing'})`)
      } else {
        other.total++
        if (any.has(code)) other.caught++
        else other.misses.push(`${c.id} (got ${[...any].join(',') || 'nothing'})`)
      }
    }
    if (c.safety.length === 0) {
      const bucket = c.hard_negative ? hn : ord
      bucket.total++
      if (flagged.size > 0) {
        bucket.flagged++
        bucket.ids.push(`${c.id} (${[...flagged].join(',')})`)
      }
      if (any.size > 0) bucket.anyFinding++
    }
    if (c.injection && f.promptInjection) inj.tp++
    else if (c.injection) {
      inj.fn++
      inj.ids.push(`missed ${c.id}`)
    } else if (f.promptInjection) {
      inj.fp++
      inj.ids.push(`false ${c.id}`)
    }
  })
  const caught = Object.values(mnm).reduce((a, r) => a + r.caught, 0)
  const total = Object.values(mnm).reduce((a, r) => a + r.total, 0)
  return {
    domain: { correct: dOk, total: dN, accuracy: dOk / dN, misses: dMiss },
    intent: { correct: iOk, total: iN, accuracy: iOk / iN, misses: iMiss },
    mustNotMiss: mnm,
    mustNotMissRecall: total === 0 ? 1 : caught / total,
    otherRecall: other,
    hardNegatives: { ...hn, rate: hn.total === 0 ? 0 : hn.flagged / hn.total },
    ordinary: ord,
    injection: inj,
  }
}

export interface KindScore {
  tp: number
  fp: number
  fn: number
  recall: number
  precision: number
  readonly misses: string[]
  readonly falsePositives: string[]
}

/** Every [start, end) where `value` occurs in `text`. */
function occurrences(text: string, value: string): [number, number][] {
  const out: [number, number][] = []
  for (let i = text.indexOf(value); i >= 0; i = text.indexOf(value, i + 1)) out.push([i, i + value.length])
  return out
}

/**
 * Span-level scoring per kind: an expected value is found when a span of its kind overlaps one of
 * its occurrences; a span that overlaps no expected value of its kind is a false positive.
 */
export function scorePii(cases: readonly PiiCase[], found: readonly (readonly PiiFinding[])[]): Map<PiiKind, KindScore> {
  const scores = new Map<PiiKind, KindScore>()
  const get = (k: PiiKind) => {
    let s = scores.get(k)
    if (!s) scores.set(k, (s = { tp: 0, fp: 0, fn: 0, recall: 1, precision: 1, misses: [], falsePositives: [] }))
    return s
  }
  cases.forEach((c, i) => {
    const findings = found[i]!
    const expected = c.pii.map((p) => ({ ...p, at: occurrences(c.text, p.value) }))
    for (const e of expected) {
      const spans = findings.find((f) => f.kind === e.kind)?.spans ?? []
      const hit = spans.some((s) => e.at.some(([a, b]) => s.start < b && a < s.end))
      const sc = get(e.kind)
      if (hit) sc.tp++
      else {
        sc.fn++
        sc.misses.push(`${c.id}: ${e.value}`)
      }
    }
    for (const f of findings) {
      for (const s of f.spans) {
        const ok = expected.some((e) => e.kind === f.kind && e.at.some(([a, b]) => s.start < b && a < s.end))
        if (!ok) {
          const sc = get(f.kind)
          sc.fp++
          sc.falsePositives.push(`${c.id}: "${c.text.slice(s.start, s.end)}"`)
        }
      }
    }
  })
  for (const s of scores.values()) {
    s.recall = s.tp + s.fn === 0 ? 1 : s.tp / (s.tp + s.fn)
    s.precision = s.tp + s.fp === 0 ? 1 : s.tp / (s.tp + s.fp)
  }
  return scores
}

/** Maps `fn` over `items` with at most `limit` calls in flight (the pool queue is bounded). */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i]!, i)
    }
  }))
  return out
}
