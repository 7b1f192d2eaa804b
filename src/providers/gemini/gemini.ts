import { Content } from '../../core/content.ts'
import { TollgateError } from '../../core/errors.ts'
import type { ModelEvent, ModelRequest, ModelResponse, StopReason } from '../../core/model.ts'
import type { Secret } from '../../core/secret.ts'
import type { UpstreamHttp } from '../http.ts'
import type { Provider, ProviderCall } from '../provider.ts'
import { num, obj, parseEventJson, postJson, postStream } from '../upstream.ts'

const GEMINI_STOP: Record<string, StopReason> = {
  STOP: 'end_turn', MAX_TOKENS: 'max_tokens', SAFETY: 'refusal', RECITATION: 'refusal', PROHIBITED_CONTENT: 'refusal', BLOCKLIST: 'refusal', SPII: 'refusal',
}

export function geminiBody(r: ModelRequest): Record<string, unknown> {
  const body: Record<string, unknown> = {
    contents: r.messages.map((m) => ({
      role: m.role === 'assistant' ? 'model' : 'user',
      parts: m.parts.map((p) => p.kind === 'text' ? { text: p.text.reveal() } : { inlineData: { mimeType: p.mediaType, data: p.data.reveal() } }),
    })),
  }
  if (r.system) body['systemInstruction'] = { parts: [{ text: r.system.reveal() }] }
  const gen: Record<string, unknown> = {}
  if (r.maxTokens !== undefined) gen['maxOutputTokens'] = r.maxTokens
  if (r.temperature !== undefined) gen['temperature'] = r.temperature
  if (r.topP !== undefined) gen['topP'] = r.topP
  if (r.stop) gen['stopSequences'] = r.stop
  if (Object.keys(gen).length > 0) body['generationConfig'] = gen
  return body
}

function candidate(json: Record<string, unknown>): { text: string; finish: string | undefined } {
  const c = obj(Array.isArray(json['candidates']) ? json['candidates'][0] : undefined)
  const parts = obj(c?.['content'])?.['parts']
  let text = ''
  if (Array.isArray(parts)) for (const p of parts) if (typeof obj(p)?.['text'] === 'string') text += obj(p)!['text'] as string
  return { text, finish: typeof c?.['finishReason'] === 'string' ? (c['finishReason'] as string) : undefined }
}

/** Google Gemini (generateContent / streamGenerateContent over SSE). Clients reach it through translation. */
export class GeminiProvider implements Provider {
  readonly name = 'gemini' as const
  readonly format = 'gemini' as const

  constructor(
    private readonly http: UpstreamHttp,
    private readonly baseUrl: string,
    private readonly apiKey: Secret | undefined,
  ) {}

  #url(model: string, stream: boolean): URL {
    const method = stream ? 'streamGenerateContent?alt=sse' : 'generateContent'
    return new URL(`${this.baseUrl.replace(/\/+$/, '')}/v1beta/models/${encodeURIComponent(model)}:${method}`)
  }

  #headers(): Record<string, string> {
    return this.apiKey ? { 'x-goog-api-key': this.apiKey.reveal() } : {}
  }

  async complete(r: ModelRequest, call: ProviderCall): Promise<ModelResponse> {
    const { json } = await postJson(this.http, { url: this.#url(call.model, false), headers: this.#headers(), body: JSON.stringify(geminiBody(r)), signal: call.signal, provider: this.name })
    if (!Array.isArray(json['candidates'])) throw new TollgateError('upstream_invalid_response', { provider: this.name })
    const { text, finish } = candidate(json)
    const usage = obj(json['usageMetadata'])
    return {
      text: Content.of(text),
      stopReason: (finish && GEMINI_STOP[finish]) || 'other',
      usage: { inputTokens: num(usage?.['promptTokenCount']), outputTokens: num(usage?.['candidatesTokenCount']) },
      raw: undefined,
    }
  }

  async stream(r: ModelRequest, call: ProviderCall): Promise<AsyncIterable<ModelEvent>> {
    const events = await postStream(this.http, { url: this.#url(call.model, true), headers: this.#headers(), body: JSON.stringify(geminiBody(r)), signal: call.signal, provider: this.name })
    const provider = this.name
    return (async function* (): AsyncGenerator<ModelEvent> {
      let finished = false
      for await (const ev of events) {
        const data = parseEventJson(ev.data, provider)
        if (obj(data['error'])) throw new TollgateError('upstream_unavailable', { provider, reason: 'stream_error_event' })
        const { text, finish } = candidate(data)
        if (finish) finished = true
        const usage = obj(data['usageMetadata'])
        yield {
          format: 'gemini',
          raw: ev.raw,
          ...(text ? { text: Content.of(text) } : {}),
          ...(finish ? { stopReason: GEMINI_STOP[finish] ?? 'other' } : {}),
          ...(usage ? { usage: { inputTokens: num(usage['promptTokenCount']), outputTokens: num(usage['candidatesTokenCount']) } } : {}),
        }
      }
      // Gemini has no end-of-stream event: the end of the body is the end — but only after a
      // finishReason; a body that ends without one (cut short, or not SSE at all) is a failure.
      if (!finished) throw new TollgateError('upstream_invalid_response', { provider, reason: 'stream_ended_early' })
      yield { format: 'gemini', raw: undefined, terminal: true }
    })()
  }
}
