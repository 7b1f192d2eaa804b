import { Content } from '../../core/content.ts'
import { TollgateError } from '../../core/errors.ts'
import type { ModelEvent, ModelRequest, ModelResponse, StopReason } from '../../core/model.ts'
import type { Secret } from '../../core/secret.ts'
import type { UpstreamHttp } from '../http.ts'
import type { Provider, ProviderCall } from '../provider.ts'
import { num, obj, parseEventJson, postJson, postStream } from '../upstream.ts'

const VERSION = '2023-06-01'
const DEFAULT_MAX_TOKENS = 4096

export const ANTHROPIC_STOP: Record<string, StopReason> = {
  end_turn: 'end_turn', max_tokens: 'max_tokens', stop_sequence: 'stop_sequence', tool_use: 'tool_use', refusal: 'refusal',
}

/** Builds an Anthropic Messages request body. Same-format requests keep every client field. */
export function anthropicBody(r: ModelRequest, model: string): Record<string, unknown> {
  if (r.passthrough?.format === 'anthropic') return { ...r.passthrough.body, model }
  const body: Record<string, unknown> = {
    model,
    max_tokens: r.maxTokens ?? DEFAULT_MAX_TOKENS,
    messages: r.messages.map((m) => ({
      role: m.role,
      content: m.parts.map((p) => p.kind === 'text'
        ? { type: 'text', text: p.text.reveal() }
        : { type: 'image', source: { type: 'base64', media_type: p.mediaType, data: p.data.reveal() } }),
    })),
  }
  if (r.system) body['system'] = r.system.reveal()
  if (r.temperature !== undefined) body['temperature'] = r.temperature
  if (r.topP !== undefined) body['top_p'] = r.topP
  if (r.stop) body['stop_sequences'] = r.stop
  if (r.stream) body['stream'] = true
  return body
}

export function anthropicText(content: unknown): string {
  if (!Array.isArray(content)) return ''
  let text = ''
  for (const block of content) {
    const b = obj(block)
    if (b?.['type'] === 'text' && typeof b['text'] === 'string') text += b['text']
  }
  return text
}

export class AnthropicProvider implements Provider {
  readonly name = 'anthropic' as const
  readonly format = 'anthropic' as const

  constructor(
    private readonly http: UpstreamHttp,
    private readonly baseUrl: string,
    private readonly apiKey: Secret | undefined,
  ) {}

  #headers(r: ModelRequest): Record<string, string> {
    const h: Record<string, string> = { 'anthropic-version': VERSION }
    if (this.apiKey) h['x-api-key'] = this.apiKey.reveal()
    // A same-format client may pin its API version and betas; they pass through validated.
    if (r.passthrough?.format === 'anthropic') Object.assign(h, r.passthrough.headers)
    return h
  }

  #url(): URL {
    return new URL(`${this.baseUrl.replace(/\/+$/, '')}/v1/messages`)
  }

  async complete(r: ModelRequest, call: ProviderCall): Promise<ModelResponse> {
    const body = anthropicBody(r, call.model)
    body['stream'] = false
    const { json, bytes } = await postJson(this.http, { url: this.#url(), headers: this.#headers(r), body: JSON.stringify(body), signal: call.signal, provider: this.name })
    const usage = obj(json['usage'])
    if (json['type'] !== 'message') throw new TollgateError('upstream_invalid_response', { provider: this.name })
    return {
      text: Content.of(anthropicText(json['content'])),
      stopReason: ANTHROPIC_STOP[String(json['stop_reason'])] ?? 'other',
      usage: { inputTokens: num(usage?.['input_tokens']), outputTokens: num(usage?.['output_tokens']) },
      raw: { format: 'anthropic', body: bytes },
    }
  }

  async stream(r: ModelRequest, call: ProviderCall): Promise<AsyncIterable<ModelEvent>> {
    const body = anthropicBody(r, call.model)
    body['stream'] = true
    const events = await postStream(this.http, { url: this.#url(), headers: this.#headers(r), body: JSON.stringify(body), signal: call.signal, provider: this.name })
    const provider = this.name
    return (async function* (): AsyncGenerator<ModelEvent> {
      for await (const ev of events) {
        const name = ev.event
        if (name === 'ping' || name === 'content_block_start' || name === 'content_block_stop') {
          yield { format: 'anthropic', raw: ev.raw }
          continue
        }
        const data = parseEventJson(ev.data, provider)
        const type = data['type'] ?? name
        if (type === 'message_start') {
          const usage = obj(obj(data['message'])?.['usage'])
          yield { format: 'anthropic', raw: ev.raw, usage: { inputTokens: num(usage?.['input_tokens']) } }
        } else if (type === 'content_block_delta') {
          const delta = obj(data['delta'])
          yield delta?.['type'] === 'text_delta' && typeof delta['text'] === 'string'
            ? { format: 'anthropic', raw: ev.raw, text: Content.of(delta['text']) }
            : { format: 'anthropic', raw: ev.raw }
        } else if (type === 'message_delta') {
          const usage = obj(data['usage'])
          const stop = obj(data['delta'])?.['stop_reason']
          yield {
            format: 'anthropic', raw: ev.raw,
            ...(typeof stop === 'string' ? { stopReason: ANTHROPIC_STOP[stop] ?? 'other' } : {}),
            usage: { outputTokens: num(usage?.['output_tokens']), ...(num(usage?.['input_tokens']) !== undefined ? { inputTokens: num(usage?.['input_tokens']) } : {}) },
          }
        } else if (type === 'message_stop') {
          yield { format: 'anthropic', raw: ev.raw, terminal: true }
          return
        } else if (type === 'error') {
          throw new TollgateError('upstream_unavailable', { provider, reason: 'stream_error_event' })
        } else {
          yield { format: 'anthropic', raw: ev.raw }
        }
      }
      throw new TollgateError('upstream_invalid_response', { provider, reason: 'stream_ended_early' })
    })()
  }
}
