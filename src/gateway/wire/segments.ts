import type { ClassifierInput, Facts, PiiKind } from '../../classify/facts.ts'
import { placeholder, redactSegments } from '../../classify/redact.ts'
import { Content } from '../../core/content.ts'
import type { Message, ModelRequest, Part } from '../../core/model.ts'

/**
 * The classifier sees every text segment of a request in a fixed order — the system prompt,
 * then each message's text parts — and its images. Spans in the facts refer to this order.
 */
export function classifierInput(r: ModelRequest): ClassifierInput {
  const segments: Content[] = []
  const images: { mediaType: import('../../core/model.ts').ImageType; data: Content }[] = []
  if (r.system) segments.push(r.system)
  for (const m of r.messages) for (const p of m.parts) {
    if (p.kind === 'text') segments.push(p.text)
    else images.push({ mediaType: p.mediaType, data: p.data })
  }
  return { segments, images, attachmentTypes: r.attachmentTypes }
}

/** The text a reasoning grade compares a reply against: the last user message's text. */
export function lastUserText(r: ModelRequest): Content {
  for (let i = r.messages.length - 1; i >= 0; i--) {
    const m = r.messages[i]!
    if (m.role === 'user') return Content.of(m.parts.map((p) => (p.kind === 'text' ? p.text.reveal() : '')).join('\n'))
  }
  return Content.empty
}

/**
 * Replaces the PII of `kinds` before anything is forwarded (GW-7). The modelled parts are
 * rewritten span by span; a passthrough body (fields Tollgate does not model: tool results,
 * documents, metadata) is rewritten by replacing every detected value wherever it occurs, so no
 * copy of it reaches a same-format provider either.
 */
export function redactRequest(r: ModelRequest, facts: Facts, kinds: readonly PiiKind[]): ModelRequest {
  const wanted = new Set(kinds)
  const input = classifierInput(r)
  const texts = input.segments.map((s) => s.reveal())
  const redacted = redactSegments(texts, facts.pii, wanted)
  const values: { value: string; kind: PiiKind }[] = []
  for (const f of facts.pii) {
    if (!wanted.has(f.kind)) continue
    for (const s of f.spans) {
      const v = texts[s.segment]?.slice(s.start, s.end)
      if (v && v.length >= 2) values.push({ value: v, kind: f.kind })
    }
  }
  // Longest first, so a value that contains another is replaced whole.
  values.sort((a, b) => b.value.length - a.value.length)
  let i = 0
  const next = () => Content.of(redacted[i++]!)
  const system = r.system ? next() : undefined
  const messages: Message[] = r.messages.map((m) => ({
    role: m.role,
    parts: m.parts.map((p): Part => (p.kind === 'text' ? { kind: 'text', text: next() } : p)),
  }))
  const passthrough = r.passthrough && { ...r.passthrough, body: scrub(r.passthrough.body, values) as Record<string, unknown> }
  return { ...r, system, messages, passthrough }
}

function scrub(v: unknown, values: readonly { value: string; kind: PiiKind }[]): unknown {
  if (typeof v === 'string') {
    let s = v
    for (const { value, kind } of values) if (s.includes(value)) s = s.split(value).join(placeholder(kind))
    return s
  }
  if (Array.isArray(v)) return v.map((x) => scrub(x, values))
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) out[k] = scrub(x, values)
    return out
  }
  return v
}

/** How a challenge is marked in an assistant message, so the next user turn is recognised as its reply. */
const MARK = /\[Tollgate challenge (ch_[0-9A-Za-z]{17}_[0-9a-z]{6}_[0-9a-z]{1,12})\]/

export function challengeText(question: string, id: string, feedback?: string): string {
  return `${feedback ? `${feedback}\n\n` : ''}${question}\n\nReply in your next message; the original request is held for a few minutes. [Tollgate challenge ${id}]`
}

/**
 * A conversation that answers a challenge: the last message is the user's reply and the one
 * before it is an assistant message carrying a challenge mark. Recognised from the conversation
 * itself — nothing about it is stored.
 */
export function challengeReply(r: ModelRequest): { id: string; reply: Content } | undefined {
  const n = r.messages.length
  if (n < 2) return undefined
  const last = r.messages[n - 1]!
  const prev = r.messages[n - 2]!
  if (last.role !== 'user' || prev.role !== 'assistant') return undefined
  const prevText = prev.parts.map((p) => (p.kind === 'text' ? p.text.reveal() : '')).join('\n')
  const id = MARK.exec(prevText)?.[1]
  if (!id) return undefined
  return { id, reply: Content.of(last.parts.map((p) => (p.kind === 'text' ? p.text.reveal() : '')).join('\n')) }
}
