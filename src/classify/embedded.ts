import { Content } from '../core/content.ts'
import { type Centroids, dot, loadCentroids } from './centroids.ts'
import { EmbedPool, type EmbedPoolOptions } from './embed-pool.ts'
import {
  DOMAINS, INTENTS, type ClassifierInput, type Classifier, type Detector, type Domain, type Facts, type Intent,
  type SafetyCode, type SafetyFinding, type Severity,
} from './facts.ts'
import { detectInjection } from './injection.ts'
import { intentByRules } from './intent.ts'
import { lexiconScreen } from './lexicon.ts'
import { detectPiiInSegments, nameScanViews, type RawPeople } from './pii.ts'
import { matchPhraseRules, normaliseForRules } from './safety-rules.ts'
import { firstWords, focusIndex } from './text.ts'

/**
 * Tuning of the embedded classifier. Defaults were chosen on the exemplars and checked against
 * the held-out fixture (test/fixtures/classify/prompts.jsonl); see test/classify/accuracy.test.ts.
 */
export interface EmbeddedThresholds {
  /** Weight of the best sub-topic centroid against the domain-wide centroid. */
  readonly groupWeight: number
  /** Softmax temperature turning domain cosines into 0..1 scores. */
  readonly domainTemperature: number
  /** Harm centroid minus best benign centroid above which the embedding layer reports a finding (low severity). */
  readonly harmMargin: number
  /** An intent centroid must beat do_it by this much (cosine) to override the do_it default. */
  readonly intentMargin: number
}

export const DEFAULT_THRESHOLDS: EmbeddedThresholds = {
  groupWeight: 0.5,
  domainTemperature: 0.04,
  harmMargin: 0.05,
  intentMargin: 0.04,
}

export interface EmbeddedOptions extends EmbedPoolOptions {
  readonly thresholds?: Partial<EmbeddedThresholds>
  /** Centroids to use (default: the committed centroids.json). */
  readonly centroids?: Centroids
}

/** Characters of the latest segment read by the intent cues (they look at how the request opens). */
const INTENT_CHARS = 4000
/** Window for the phrase rules and lexicon over long segments (with an overlap so phrases across edges are seen). */
const RULE_WINDOW = 8192
const RULE_OVERLAP = 200

const SEVERITY_RANK: Readonly<Record<Severity, number>> = { low: 0, medium: 1, high: 2 }
const SOURCE_RANK: Readonly<Record<SafetyFinding['source'], number>> = { rules: 3, llm: 2, lexicon: 1, embedding: 0 }

/** Keeps one finding per code: the most severe, then the most trusted source. */
export function mergeSafety(findings: readonly SafetyFinding[]): SafetyFinding[] {
  const best = new Map<SafetyCode, SafetyFinding>()
  for (const f of findings) {
    const cur = best.get(f.code)
    if (!cur || SEVERITY_RANK[f.severity] > SEVERITY_RANK[cur.severity] || (f.severity === cur.severity && SOURCE_RANK[f.source] > SOURCE_RANK[cur.source])) best.set(f.code, f)
  }
  return [...best.values()].sort((a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || a.code.localeCompare(b.code, 'en', { numeric: true }))
}

export interface DomainScores {
  readonly domain: Domain
  readonly score: number
  readonly margin: number
  /** Blended cosine per domain (for diagnostics and the eval script). */
  readonly cosines: Readonly<Record<Domain, number>>
}

export function scoreDomains(v: Float32Array, c: Centroids, t: EmbeddedThresholds = DEFAULT_THRESHOLDS): DomainScores {
  const group = new Map<Domain, number>()
  for (const g of c.domainGroups) group.set(g.domain, Math.max(group.get(g.domain) ?? -1, dot(v, g.v)))
  const cosines = {} as Record<Domain, number>
  for (const d of DOMAINS) cosines[d] = t.groupWeight * (group.get(d) ?? 0) + (1 - t.groupWeight) * dot(v, c.domainAll.get(d)!)
  const probs = softmax(DOMAINS.map((d) => cosines[d]), t.domainTemperature)
  const order = DOMAINS.map((d, i) => ({ d, p: probs[i]! })).sort((a, b) => b.p - a.p)
  return { domain: order[0]!.d, score: order[0]!.p, margin: order[0]!.p - order[1]!.p, cosines }
}

export function scoreIntentEmbedding(v: Float32Array, c: Centroids, t: EmbeddedThresholds = DEFAULT_THRESHOLDS): { intent: Intent; score: number } {
  const sims = INTENTS.map((i) => dot(v, c.intent.get(i)!))
  const doIt = sims[INTENTS.indexOf('do_it')]!
  let best: Intent = 'do_it'
  let bestSim = doIt
  for (let k = 0; k < INTENTS.length; k++) {
    if (INTENTS[k] !== 'do_it' && sims[k]! > doIt + t.intentMargin && sims[k]! > bestSim) {
      best = INTENTS[k]!
      bestSim = sims[k]!
    }
  }
  // A tie-break is never confident: capped below the cue scores, so `low_margin` escalation can tell it apart.
  const probs = softmax(sims, 0.03)
  return { intent: best, score: round(Math.min(0.7, probs[INTENTS.indexOf(best)]!)) }
}

export function harmByEmbedding(v: Float32Array, c: Centroids, t: EmbeddedThresholds = DEFAULT_THRESHOLDS): { code: SafetyCode; margin: number } | undefined {
  let benign = dot(v, c.safe)
  for (const g of c.domainGroups) benign = Math.max(benign, dot(v, g.v))
  let best: { code: SafetyCode; margin: number } | undefined
  for (const h of c.harm) {
    const margin = dot(v, h.v) - benign
    if (!best || margin > best.margin) best = { code: h.code, margin }
  }
  return best && best.margin > t.harmMargin ? best : undefined
}

function softmax(xs: readonly number[], temperature: number): number[] {
  const m = Math.max(...xs)
  const e = xs.map((x) => Math.exp((x - m) / temperature))
  const s = e.reduce((a, b) => a + b, 0)
  return e.map((x) => x / s)
}

const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits

/** Runs `fn` over `text` in overlapping windows, yielding to the event loop between windows. */
async function overWindows(text: string, fn: (window: string) => void, signal: AbortSignal | undefined): Promise<void> {
  if (text.length <= RULE_WINDOW) return fn(text)
  for (let from = 0; from < text.length; from += RULE_WINDOW) {
    if (from > 0) {
      await new Promise((r) => setImmediate(r))
      signal?.throwIfAborted()
    }
    fn(text.slice(from, Math.min(text.length, from + RULE_WINDOW + RULE_OVERLAP)))
  }
}

interface RuleScreen {
  readonly findings: SafetyFinding[]
  readonly injection: boolean
  readonly profanity: boolean
}

/** `injection: false` skips the injection flag (the output screen has no use for it; the result then says false). */
async function screenRules(texts: readonly string[], signal: AbortSignal | undefined, opts: { readonly injection: boolean } = { injection: true }): Promise<RuleScreen> {
  const findings: SafetyFinding[] = []
  let injection = false
  let profanity = false
  for (const text of texts) {
    await overWindows(text, (w) => {
      const norm = normaliseForRules(w)
      for (const hit of matchPhraseRules(norm)) {
        findings.push({ code: hit.rule.code, severity: hit.rule.severity, score: hit.rule.severity === 'high' ? 0.95 : 0.8, source: 'rules' })
      }
      const lex = lexiconScreen(w)
      for (const f of lex.findings) findings.push({ code: f.code, severity: f.severity, score: f.severity === 'medium' ? 0.7 : 0.5, source: 'lexicon' })
      profanity ||= lex.profanity
      if (opts.injection) injection ||= detectInjection(norm)
    }, signal)
  }
  return { findings, injection, profanity }
}

/**
 * The safety screen for a model's answer (GW-6): the reviewed phrase rules and the lexicon, no
 * embedding — fast enough to run on every streamed chunk's window before it is released.
 */
export async function screenOutput(text: string, signal?: AbortSignal): Promise<Pick<Facts, 'safety' | 'errors'>> {
  try {
    const r = await screenRules([text], signal, { injection: false })
    return { safety: mergeSafety(r.findings), errors: [] }
  } catch (err) {
    if (signal?.aborted) throw err
    return { safety: [], errors: ['safety'] }
  }
}

/**
 * The offline default classifier (GW-3, GW-6, GW-7): USE-lite nearest-centroid domain labels,
 * intent by cue rules with the embedding as tie-breaker, a layered safety screen (reviewed phrase
 * rules, obscenity lexicon, harm centroids with a margin, an injection flag) and our own PII/PHI
 * detector. The model runs in a worker pool; rules and PII run on the main thread in bounded,
 * yielding chunks. Facts carry labels, scores and codes — never text.
 */
export class EmbeddedClassifier implements Classifier {
  readonly name = 'embedded'
  readonly #pool: EmbedPool
  readonly #centroids: Centroids
  readonly #t: EmbeddedThresholds

  constructor(opts: EmbeddedOptions = {}) {
    this.#centroids = opts.centroids ?? loadCentroids()
    this.#t = { ...DEFAULT_THRESHOLDS, ...opts.thresholds }
    this.#pool = new EmbedPool(opts)
  }

  #warm: Promise<void> | undefined

  /**
   * Resolves once a worker has loaded the model and the main-thread detectors are warm (their
   * first run compiles patterns and loads lexicons: ~0.2–2 s that must not land on a request).
   */
  ready(): Promise<void> {
    this.#warm ??= this.#pool.ready().then(async () => {
      const sample = 'Warm-up: how do I sort a list in Python? Mail a@b.example or call +1 415 555 0100.'
      await this.classify({ segments: [Content.of(sample)], images: [], attachmentTypes: [] }, { model: false })
      await screenOutput(sample)
    })
    return this.#warm
  }

  loadModel(): Promise<void> {
    return this.#pool.modelReady()
  }

  get pool(): EmbedPool {
    return this.#pool
  }

  async classify(input: ClassifierInput, opts: { readonly signal?: AbortSignal; readonly model?: boolean } = {}): Promise<Facts> {
    const t0 = performance.now()
    const signal = opts.signal
    signal?.throwIfAborted()
    const texts = input.segments.map((s) => s.reveal())
    const focus = focusIndex(texts)
    const skipModel = opts.model === false
    const view = focus >= 0 && !skipModel ? firstWords(texts[focus]!) : ''
    const errors = new Set<Detector>()

    // The model works in a worker while the rules and the PII detector run here.
    const embedding = view === ''
      ? Promise.resolve(undefined)
      : this.#pool.ready().then(() => this.#pool.embed([view], signal)).then((v) => v[0], (err: unknown) => {
        if (signal?.aborted) throw err
        return undefined
      })
    // Swallow a rejection until it is awaited below (an abort can land while the rules run).
    embedding.catch(() => {})
    // Person names (compromise, a few ms per KB) are found in a worker too, in parallel.
    const views = nameScanViews(texts)
    const people: Promise<RawPeople[] | undefined> = views.every((v) => v === '')
      ? Promise.resolve(views.map(() => []))
      : this.#pool.ready().then(() => this.#pool.people(views, signal)).then((p) => p, (err: unknown) => {
        if (signal?.aborted) throw err
        return undefined
      })
    people.catch(() => {})

    const [rules, pii] = await Promise.all([
      screenRules(texts, signal).catch((err: unknown) => {
        if (signal?.aborted) throw err
        errors.add('safety')
        errors.add('injection')
        return { findings: [], injection: false, profanity: false } as RuleScreen
      }),
      people.then(async (raw) => {
        // Without the worker's name mentions, the validated patterns still run; names are missing.
        if (!raw) errors.add('pii')
        return detectPiiInSegments(texts, { signal, people: raw ?? texts.map(() => []) })
      }).catch((err: unknown) => {
        if (signal?.aborted) throw err
        errors.add('pii')
        return []
      }),
    ])
    const intentText = focus >= 0 ? texts[focus]!.slice(0, INTENT_CHARS) : ''
    const cued = intentByRules(intentText)

    const v = await embedding
    signal?.throwIfAborted()

    let domain: Domain = 'other'
    let domainScore = 0
    let domainMargin = 0
    let intent: Intent = cued?.intent ?? 'do_it'
    let intentScore = cued ? (cued.cue === 'debug_cue' || cued.cue === 'imperative' ? 0.9 : 0.8) : 0.5
    const safety: SafetyFinding[] = [...rules.findings]
    if (v) {
      const d = scoreDomains(v, this.#centroids, this.#t)
      domain = d.domain
      domainScore = round(d.score)
      domainMargin = round(d.margin)
      if (!cued) ({ intent, score: intentScore } = scoreIntentEmbedding(v, this.#centroids, this.#t))
      const harm = harmByEmbedding(v, this.#centroids, this.#t)
      if (harm) safety.push({ code: harm.code, severity: 'low', score: round(Math.min(0.6, 0.3 + harm.margin)), source: 'embedding' })
    } else if (view !== '') {
      // The model failed or timed out: the domain is unknown and the safety screen ran without its
      // embedding layer. Policies apply their failure mode to these detectors (GW-4).
      errors.add('domain')
      errors.add('safety')
      if (!cued) errors.add('intent')
    }
    if (input.images.length > 0) errors.add('image') // the embedded classifier has no image model

    return {
      domain, domainScore, domainMargin, intent, intentScore,
      safety: mergeSafety(safety),
      promptInjection: rules.injection,
      pii,
      attachments: { count: input.attachmentTypes.length, mimeTypes: [...input.attachmentTypes], imageLabels: [] },
      classifier: this.name,
      latencyMs: round(performance.now() - t0, 1),
      errors: [...errors],
      profanity: rules.profanity,
      ...(skipModel ? { modelSkipped: true } : {}),
    }
  }

  close(): Promise<void> {
    return this.#pool.close()
  }
}
