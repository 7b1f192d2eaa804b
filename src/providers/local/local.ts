import { Content } from '../../core/content.ts'
import type { ModelEvent, ModelRequest, ModelResponse } from '../../core/model.ts'
import type { Provider, ProviderCall } from '../provider.ts'

/**
 * The built-in offline provider (D17): used when no upstream is configured for a model (or for
 * sandbox keys without sandbox credentials). It answers deterministically from the request's
 * shape — never its words — and says plainly that no upstream model was involved.
 */
export class LocalProvider implements Provider {
  readonly name = 'local' as const
  readonly format = 'local' as const

  static answer(r: ModelRequest): string {
    const chars = r.messages.reduce((n, m) => n + m.parts.reduce((k, p) => k + (p.kind === 'text' ? p.text.length : 0), 0), 0)
    const images = r.messages.reduce((n, m) => n + m.parts.filter((p) => p.kind === 'image').length, 0)
    return `This answer comes from Tollgate's built-in local provider: no upstream provider is configured for the requested model on this instance, so your request was checked by the gateway and not sent to any AI model. ` +
      `It had ${r.messages.length} message(s), ${chars} character(s) of text and ${images} image(s). ` +
      'To reach a real model, set ANTHROPIC_API_KEY, OPENAI_API_KEY (or OPENAI_BASE_URL for a local server) or GEMINI_API_KEY and restart.'
  }

  async complete(r: ModelRequest, _call: ProviderCall): Promise<ModelResponse> {
    const text = LocalProvider.answer(r)
    return { text: Content.of(text), stopReason: 'end_turn', usage: usageOf(r, text), raw: undefined }
  }

  async stream(r: ModelRequest, call: ProviderCall): Promise<AsyncIterable<ModelEvent>> {
    const text = LocalProvider.answer(r)
    const words = text.split(/(?<= )/)
    const size = Math.ceil(words.length / 8)
    const signal = call.signal
    return (async function* (): AsyncGenerator<ModelEvent> {
      yield { format: 'local', raw: undefined, usage: { inputTokens: usageOf(r, text).inputTokens } }
      for (let i = 0; i < words.length && !signal.aborted; i += size) {
        yield { format: 'local', raw: undefined, text: Content.of(words.slice(i, i + size).join('')) }
      }
      yield { format: 'local', raw: undefined, stopReason: 'end_turn', usage: { outputTokens: usageOf(r, text).outputTokens } }
      yield { format: 'local', raw: undefined, terminal: true }
    })()
  }
}

function usageOf(r: ModelRequest, text: string): { inputTokens: number; outputTokens: number } {
  const chars = (r.system?.length ?? 0) + r.messages.reduce((n, m) => n + m.parts.reduce((k, p) => k + (p.kind === 'text' ? p.text.length : 0), 0), 0)
  return { inputTokens: Math.ceil(chars / 4), outputTokens: text.split(/\s+/).length }
}
