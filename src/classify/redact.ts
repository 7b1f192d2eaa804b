import type { PiiFinding, PiiKind } from './facts.ts'

/** The placeholder a span is replaced with: `[EMAIL_ADDRESS]`, `[PERSON]`, … (no part of the value survives). */
export const placeholder = (kind: PiiKind): string => `[${kind}]`

/**
 * Replaces the PII spans of each segment with placeholders (all kinds, or only `kinds`).
 * Pure: returns new strings. Used before anything is sent to an LLM classifier, and available
 * to friction's `redact` action.
 */
export function redactSegments(segments: readonly string[], pii: readonly PiiFinding[], kinds?: ReadonlySet<PiiKind>): string[] {
  const bySegment = new Map<number, { start: number; end: number; kind: PiiKind }[]>()
  for (const f of pii) {
    if (kinds && !kinds.has(f.kind)) continue
    for (const s of f.spans) {
      const list = bySegment.get(s.segment) ?? []
      list.push({ start: s.start, end: s.end, kind: f.kind })
      bySegment.set(s.segment, list)
    }
  }
  return segments.map((text, i) => replaceSpans(text, bySegment.get(i) ?? []))
}

/** `text` with each span replaced by its kind's placeholder (overlapping spans: the first one covers it). */
export function replaceSpans(text: string, spans: readonly { readonly start: number; readonly end: number; readonly kind: PiiKind }[]): string {
  if (spans.length === 0) return text
  let out = ''
  let at = 0
  for (const s of [...spans].sort((a, b) => a.start - b.start)) {
    if (s.start < at) continue
    out += text.slice(at, s.start) + placeholder(s.kind)
    at = s.end
  }
  return out + text.slice(at)
}
