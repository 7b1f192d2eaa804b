import { Content, joinContent } from '../../core/content.ts'
import { ERRORS, type ErrorCode } from '../../core/errors.ts'
import type { Message, ModelEvent, ModelRequest, ModelResponse, Part, StopReason, Usage } from '../../core/model.ts'
import { sseEvent } from '../../providers/sse.ts'
import { anthropicHeaders, array, bad, imagePart, imageType, modelName, object, optBool, optInt, optNumber, optStringList, string, type Obj } from './validate.ts'
import { errorMessage } from './messages.ts'
import type { ReplyContext, StreamEncoder, Wire } from './wire.ts'

const STOP_OUT: Record<StopReason, string> = { end_turn: 'end_turn', max_tokens: 'max_tokens', stop_sequence: 'stop_sequence', tool_use: 'tool_use', refusal: 'refusal', other: 'end_turn' }

function errorType(status: number): string {
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'not_found_error'
  if (status === 413) return 'request_too_large'
  if (status === 429) return 'rate_limit_error'
  if (status >= 500) return status === 503 ? 'overloaded_error' : 'api_error'
  return 'invalid_request_error'
}

function parseBlocks(content: unknown, param: string, types: string[]): { parts: Part[]; sameFormatOnly: boolean } {
  if (typeof content === 'string') return { parts: [{ kind: 'text', text: Content.of(content) }], sameFormatOnly: false }
  const parts: Part[] = []
  let sameFormatOnly = false
  array(content, param, 0, 10_000).forEach((b, i) => {
    const block = object(b, `${param}[${i}]`)
    const type = block['type']
    if (type === 'text') parts.push({ kind: 'text', text: Content.of(string(block['text'], `${param}[${i}].text`)) })
    else if (type === 'image') {
      const source = object(block['source'], `${param}[${i}].source`)
      if (source['type'] === 'base64') {
        const mt = imageType(source['media_type'], `${param}[${i}].source.media_type`)
        parts.push(imagePart(mt, source['data'], `${param}[${i}].source.data`))
        types.push(mt)
      } else if (source['type'] === 'url') {
        string(source['url'], `${param}[${i}].source.url`, 8192)
        sameFormatOnly = true
      } else throw bad(`${param}[${i}].source.type`)
    } else if (typeof type === 'string' && /^[a-z_]{1,64}$/.test(type)) {
      // tool_use, tool_result, document, thinking…: carried only to an Anthropic upstream.
      sameFormatOnly = true
    } else throw bad(`${param}[${i}].type`)
  })
  return { parts, sameFormatOnly }
}

/** The Anthropic Messages API (`POST /v1/messages`). */
export const anthropicWire: Wire = {
  format: 'anthropic',

  parse(body, headers): ModelRequest {
    const b = object(body, 'body')
    const model = modelName(b['model'])
    const maxTokens = optInt(b['max_tokens'], 'max_tokens', 1, 1_000_000)
    if (maxTokens === undefined) throw bad('max_tokens')
    const types: string[] = []
    let sameFormatOnly = b['tools'] !== undefined || b['tool_choice'] !== undefined
    let system: Content | undefined
    if (b['system'] !== undefined && b['system'] !== null) {
      const s = parseBlocks(b['system'], 'system', types)
      if (s.parts.some((p) => p.kind !== 'text')) throw bad('system')
      system = joinContent(s.parts.map((p) => (p.kind === 'text' ? p.text : Content.empty)))
    }
    const messages: Message[] = array(b['messages'], 'messages', 1, 100_000).map((m, i) => {
      const msg = object(m, `messages[${i}]`)
      const role = msg['role']
      if (role !== 'user' && role !== 'assistant') throw bad(`messages[${i}].role`)
      const c = parseBlocks(msg['content'], `messages[${i}].content`, types)
      sameFormatOnly ||= c.sameFormatOnly
      return { role, parts: c.parts }
    })
    return {
      model, system, messages, maxTokens,
      temperature: optNumber(b['temperature'], 'temperature', 0, 2),
      topP: optNumber(b['top_p'], 'top_p', 0, 1),
      stop: optStringList(b['stop_sequences'], 'stop_sequences'),
      stream: optBool(b['stream'], 'stream') ?? false,
      sameFormatOnly,
      attachmentTypes: types,
      passthrough: { format: 'anthropic', body: b, headers: anthropicHeaders(headers) },
    }
  },

  respond(res: ModelResponse, ctx: ReplyContext) {
    if (res.raw?.format === 'anthropic') return res.raw.body
    return JSON.stringify({
      id: `msg_${ctx.decisionId}`, type: 'message', role: 'assistant', model: ctx.model,
      content: [{ type: 'text', text: res.text.reveal() }],
      stop_reason: STOP_OUT[res.stopReason], stop_sequence: null,
      usage: { input_tokens: res.usage.inputTokens ?? 0, output_tokens: res.usage.outputTokens ?? 0 },
    })
  },

  stream(ctx: ReplyContext, passthrough: boolean): StreamEncoder {
    let held: Buffer | undefined
    const ev = (name: string, data: Obj) => sseEvent(name, JSON.stringify({ type: name, ...data }))
    return {
      start: () => passthrough ? '' :
        ev('message_start', { message: { id: `msg_${ctx.decisionId}`, type: 'message', role: 'assistant', model: ctx.model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 0, output_tokens: 0 } } }) +
        ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      event(e: ModelEvent) {
        if (passthrough && e.raw) {
          if (e.terminal) {
            held = e.raw
            return undefined
          }
          return e.raw
        }
        return e.text ? ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: e.text.reveal() } }) : undefined
      },
      finish(s: { stopReason: StopReason; usage: Usage }) {
        if (passthrough) return held ?? ev('message_stop', {})
        return ev('content_block_stop', { index: 0 }) +
          ev('message_delta', { delta: { stop_reason: STOP_OUT[s.stopReason], stop_sequence: null }, usage: { input_tokens: s.usage.inputTokens ?? 0, output_tokens: s.usage.outputTokens ?? 0 } }) +
          ev('message_stop', {})
      },
      error: (code: ErrorCode) => sseEvent('error', JSON.stringify({ type: 'error', error: { type: errorType(ERRORS[code].status), message: ERRORS[code].message } })),
    }
  },

  replay(d) {
    return JSON.stringify({
      id: `msg_${d.id}`, type: 'message', role: 'assistant', model: d.model ?? 'other', content: [], stop_reason: 'end_turn', stop_sequence: null,
      usage: { input_tokens: d.input_tokens ?? 0, output_tokens: d.output_tokens ?? 0 },
    })
  },

  error(code: ErrorCode, requestId: string, param?: string, reason?: string) {
    const message = errorMessage(code, param, reason)
    return JSON.stringify({ type: 'error', error: { type: errorType(ERRORS[code].status), message }, request_id: requestId })
  },
}

