import { Content } from '../core/content.ts'
import { SAFETY_NAMES, type Classifier, type Facts } from './facts.ts'

/**
 * `tollgate classify [--json]`: reads JSONL from stdin — one `{"prompt": "...", "system"?: "..."}`
 * per line — and writes one result per line, in input order. With --json each result is a JSON
 * object with a fixed key order: labels, scores, finding codes and counts; never text, never spans,
 * no timings (so the output is stable). A line that is not such an object gets
 * `{"line": n, "error": "invalid_line"}` and the command exits 1 at the end.
 */
export interface ClassifyCliResult {
  readonly lines: number
  readonly invalid: number
}

/** Splits a stream of chunks into lines (\n or \r\n), the last one without a newline included. */
export async function* linesOf(chunks: AsyncIterable<string | Buffer>): AsyncGenerator<string> {
  let rest = ''
  const decoder = new TextDecoder()
  for await (const chunk of chunks) {
    rest += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true })
    let nl: number
    while ((nl = rest.indexOf('\n')) >= 0) {
      yield rest.slice(0, nl).replace(/\r$/, '')
      rest = rest.slice(nl + 1)
    }
  }
  rest += decoder.decode()
  if (rest !== '') yield rest.replace(/\r$/, '')
}

const r3 = (x: number) => Math.round(x * 1000) / 1000

/** The stable JSON shape of one result (no spans, no latency). */
export function factsToJson(line: number, f: Facts): Record<string, unknown> {
  return {
    line,
    domain: f.domain,
    domain_score: r3(f.domainScore),
    domain_margin: r3(f.domainMargin),
    intent: f.intent,
    intent_score: r3(f.intentScore),
    safety: f.safety.map((s) => ({ code: s.code, name: SAFETY_NAMES[s.code], severity: s.severity, source: s.source })),
    prompt_injection: f.promptInjection,
    profanity: f.profanity ?? false,
    pii: f.pii.map((p) => ({ kind: p.kind, count: p.count })).sort((a, b) => a.kind.localeCompare(b.kind)),
    classifier: f.classifier,
    errors: [...f.errors].sort(),
  }
}

export function factsToText(line: number, f: Facts): string {
  const safety = f.safety.length === 0 ? 'safe' : f.safety.map((s) => `${s.code}:${s.severity}`).join(',')
  const pii = f.pii.length === 0 ? 'no-pii' : f.pii.map((p) => `${p.kind}x${p.count}`).join(',')
  return [
    String(line),
    `${f.domain} (${f.domainScore.toFixed(2)}, margin ${f.domainMargin.toFixed(2)})`,
    `${f.intent} (${f.intentScore.toFixed(2)})`,
    safety,
    pii,
    f.promptInjection ? 'injection' : '-',
    ...(f.errors.length > 0 ? [`errors:${f.errors.join(',')}`] : []),
  ].join('\t')
}

function parseLine(raw: string): { prompt: string; system: string | undefined } | undefined {
  try {
    const v = JSON.parse(raw) as unknown
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined
    const o = v as Record<string, unknown>
    if (typeof o['prompt'] !== 'string') return undefined
    if (o['system'] !== undefined && typeof o['system'] !== 'string') return undefined
    return { prompt: o['prompt'], system: o['system'] as string | undefined }
  } catch {
    return undefined
  }
}

/** Classifies every line with up to `concurrency` in flight, printing results in input order. */
export async function classifyLines(
  input: AsyncIterable<string | Buffer>,
  classifier: Classifier,
  out: (line: string) => void,
  opts: { readonly json: boolean; readonly concurrency?: number },
): Promise<ClassifyCliResult> {
  const window: Promise<string>[] = []
  const limit = Math.max(1, opts.concurrency ?? 4)
  let lines = 0
  let invalid = 0
  for await (const raw of linesOf(input)) {
    if (raw.trim() === '') continue
    const n = ++lines
    const parsed = parseLine(raw)
    if (!parsed) {
      invalid++
      window.push(Promise.resolve(opts.json ? JSON.stringify({ line: n, error: 'invalid_line' }) : `${n}\tinvalid_line`))
    } else {
      const segments = [...(parsed.system !== undefined ? [Content.of(parsed.system)] : []), Content.of(parsed.prompt)]
      window.push(classifier.classify({ segments, images: [], attachmentTypes: [] }).then((f) => (opts.json ? JSON.stringify(factsToJson(n, f)) : factsToText(n, f))))
    }
    if (window.length >= limit) out(await window.shift()!)
  }
  while (window.length > 0) out(await window.shift()!)
  return { lines, invalid }
}
