/**
 * Request bodies: a system prompt plus a ~1,000-character user prompt and `max_tokens: 64`
 * (~1.2 KB), in OpenAI and Anthropic format, JSON and `"stream": true`. Model names are catalog
 * names Tollgate routes by default (gpt-* → openai, claude-* → anthropic).
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

export type Api = 'openai' | 'anthropic'
export type Mode = 'json' | 'sse'

export const OPENAI_MODEL = 'gpt-4o-mini'
export const ANTHROPIC_MODEL = 'claude-3-5-haiku-latest'
export const PATHS: Record<Api, string> = { openai: '/v1/chat/completions', anthropic: '/v1/messages' }

const SYSTEM = 'You answer in plain English, briefly, for an operations audience.'
const SENTENCE = 'Our storage tier moved to a new replication scheme this quarter: writes are acknowledged after two of three replicas confirm, reads prefer the nearest replica, and a nightly job verifies checksums across all copies. '
const USER = `Draft a short status note for the weekly operations review. ${SENTENCE.repeat(5)}`.slice(0, 1000)

export interface BodyOptions {
  /** Ask the mock to pace its stream: `<n>` content deltas `<gapMs>` apart (the SSE timing probe). */
  readonly probe?: { readonly gapMs: number; readonly chunks: number }
  /** OpenAI streams: ask for the usage chunk (what Tollgate always asks its upstream for). */
  readonly includeUsage?: boolean
}

export function body(api: Api, mode: Mode, opts: BodyOptions = {}): string {
  const marker = opts.probe ? `bench:gap=${opts.probe.gapMs}:chunks=${opts.probe.chunks}` : undefined
  if (api === 'openai') {
    return JSON.stringify({
      model: OPENAI_MODEL,
      messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: USER }],
      max_tokens: 64,
      ...(mode === 'sse' ? { stream: true } : {}),
      ...(mode === 'sse' && opts.includeUsage ? { stream_options: { include_usage: true } } : {}),
      ...(marker ? { user: marker } : {}),
    })
  }
  return JSON.stringify({
    model: ANTHROPIC_MODEL,
    max_tokens: 64,
    system: SYSTEM,
    messages: [{ role: 'user', content: USER }],
    ...(mode === 'sse' ? { stream: true } : {}),
    ...(marker ? { metadata: { user_id: marker } } : {}),
  })
}

/** Writes the four load bodies into `dir`; returns their paths by `${api}-${mode}`. */
export function writeBodies(dir: string): Record<`${Api}-${Mode}`, string> {
  const out = {} as Record<`${Api}-${Mode}`, string>
  for (const api of ['openai', 'anthropic'] as const) {
    for (const mode of ['json', 'sse'] as const) {
      const p = join(dir, `${api}-${mode}.json`)
      writeFileSync(p, body(api, mode))
      out[`${api}-${mode}`] = p
    }
  }
  return out
}
