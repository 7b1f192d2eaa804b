import { Content } from '../../core/content.ts'
import { TollgateError } from '../../core/errors.ts'
import type { ModelEvent, ModelRequest, ModelResponse, StopReason } from '../../core/model.ts'
import type { Secret } from '../../core/secret.ts'
import type { UpstreamHttp } from '../http.ts'
import type { Provider, ProviderCall } from '../provider.ts'
import { num, obj, parseEventJson, postJson, postStream } from '../upstream.ts'

export const OPENAI_STOP: Record<string, StopReason> = {
  stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use', function_call: 'tool_use', content_filter: 'refusal',
}

/** Builds a Chat Completions body. Same-format requests keep every client field. */
export function openaiBody(r: ModelRequest, model: string): Record<string, unknown> {
  if (r.passthrough?.format === 'openai') return { ...r.passthrough.body, model }
  const messages: unknown[] = []
  if (r.system) messages.push({ role: 'system', content: r.system.reveal() })
  for (const m of r.messages) {
    const onlyText = m.parts.every((p) => p.kind === 'text')
    messages.push({
      role: m.role,
      content: onlyText
        ? m.parts.map((p) => (p.kind === 'text' ? p.text.reveal() : '')).join('\n')
        : m.parts.map((p) => p.kind === 'text'
          ? { type: 'text', text: p.text.reveal() }
          : { type: 'image_url', image_url: { url: `data:${p.mediaType};base64,${p.data.reveal()}` } }),
    })
  }
  const body: Record<string, unknown> = { model, messages }
  if (r.maxTokens !== undefined) body['max_tokens'] = r.maxTokens
  if (r.temperature !== undefined) body['temperature'] = r.temperature
  if (r.topP !== undefined) body['top_p'] = r.topP
  if (r.stop) body['stop'] = r.stop
  return body
}

/**
 * Any OpenAI-compatible Chat Completions server: OpenAI itself, or a local Ollama, vLLM or
 * llama.cpp server (base URL ending in /v1; the key is optional for those).
 */
export class OpenAiProvider implements Provider {
  readonly name = 'openai' as const
  readonly format = 'openai' as const

  constructor(
    private readonly http: UpstreamHttp,
    private readonly baseUrl: string,
    private readonly apiKey: Secret | undefined,
  ) {}

  #url(): URL {
    return new URL(`${this.baseUrl.replace(/\/+$/, '')}/chat/completions`)
  }

  #headers(): Record<string, string> {
    return this.apiKey ? { authorization: `Bearer ${this.apiKey.reveal()}` } : {}
  }

  async complete(r: ModelRequest, call: ProviderCall): Promise<ModelResponse> {
    const body = openaiBody(r, call.model)
    delete body['stream']
    delete body['stream_options']
    const { json, bytes } = await postJson(this.http, { url: this.#url(), headers: this.#headers(), body: JSON.stringify(body), signal: call.signal, provider: this.name })
    const choice = obj(Array.isArray(json['choices']) ? json['choices'][0] : undefined)
    const message = obj(choice?.['message'])
    if (!choice || !message) throw new TollgateError('upstream_invalid_response', { provider: this.name })
    const usage = obj(json['usage'])
    return {
      text: Content.of(typeof message['content'] === 'string' ? message['content'] : ''),
      stopReason: OPENAI_STOP[String(choice['finish_reason'])] ?? 'other',
      usage: { inputTokens: num(usage?.['prompt_tokens']), outputTokens: num(usage?.['completion_tokens']) },
      raw: { format: 'openai', body: bytes },
    }
  }

  async stream(r: ModelRequest, call: ProviderCall): Promise<AsyncIterable<ModelEvent>> {
    const body = openaiBody(r, call.model)
    body['stream'] = true
    // Always ask for usage so the decision record has token counts; a client that did not ask
    // for it never sees the usage chunk (the wire encoder drops it).
    body['stream_options'] = { ...(obj(body['stream_options']) ?? {}), include_usage: true }
    const events = await postStream(this.http, { url: this.#url(), headers: this.#headers(), body: JSON.stringify(body), signal: call.signal, provider: this.name })
    const provider = this.name
    return (async function* (): AsyncGenerator<ModelEvent> {
      for await (const ev of events) {
        if (ev.data === '[DONE]') {
          yield { format: 'openai', raw: ev.raw, terminal: true }
          return
        }
        const data = parseEventJson(ev.data, provider)
        if (obj(data['error'])) throw new TollgateError('upstream_unavailable', { provider, reason: 'stream_error_event' })
        const choice = obj(Array.isArray(data['choices']) ? data['choices'][0] : undefined)
        const usage = obj(data['usage'])
        const content = obj(choice?.['delta'])?.['content']
        const finish = choice?.['finish_reason']
        yield {
          format: 'openai',
          raw: ev.raw,
          ...(typeof content === 'string' && content.length > 0 ? { text: Content.of(content) } : {}),
          ...(typeof finish === 'string' ? { stopReason: OPENAI_STOP[finish] ?? 'other' } : {}),
          ...(usage ? { usage: { inputTokens: num(usage['prompt_tokens']), outputTokens: num(usage['completion_tokens']) } } : {}),
        }
      }
      throw new TollgateError('upstream_invalid_response', { provider, reason: 'stream_ended_early' })
    })()
  }
}
