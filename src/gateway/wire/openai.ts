import { Content, joinContent } from '../../core/content.ts'
import { ERRORS, TollgateError, type ErrorCode } from '../../core/errors.ts'
import type { Message, ModelEvent, ModelRequest, ModelResponse, Part, StopReason, Usage } from '../../core/model.ts'
import { sseEvent } from '../../providers/sse.ts'
import { array, bad, imagePart, imageType, modelName, object, optBool, optInt, optNumber, optStringList, string } from './validate.ts'
import { errorMessage } from './messages.ts'
import type { ReplyContext, StreamEncoder, Wire } from './wire.ts'

const STOP_OUT: Record<StopReason, string> = { end_turn: 'stop', max_tokens: 'length', stop_sequence: 'stop', tool_use: 'tool_calls', refusal: 'content_filter', other: 'stop' }
const DATA_URL = /^data:(image\/[a-z]+);base64,/

function errorType(status: number): string {
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'not_found_error'
  if (status === 429) return 'rate_limit_error'
  if (status >= 500) return 'server_error'
  return 'invalid_request_error'
}

function parseContent(content: unknown, param: string, types: string[]): { parts: Part[]; sameFormatOnly: boolean } {
  if (content === null || content === undefined) return { parts: [], sameFormatOnly: false }
  if (typeof content === 'string') return { parts: [{ kind: 'text', text: Content.of(content) }], sameFormatOnly: false }
  const parts: Part[] = []
  let sameFormatOnly = false
  array(content, param, 0, 10_000).forEach((p, i) => {
    const part = object(p, `${param}[${i}]`)
    if (part['type'] === 'text') parts.push({ kind: 'text', text: Content.of(string(part['text'], `${param}[${i}].text`)) })
    else if (part['type'] === 'image_url') {
      const url = string(object(part['image_url'], `${param}[${i}].image_url`)['url'], `${param}[${i}].image_url.url`)
      const m = DATA_URL.exec(url)
      if (m) {
        const mt = imageType(m[1], `${param}[${i}].image_url.url`)
        parts.push(imagePart(mt, url.slice(m[0].length), `${param}[${i}].image_url.url`))
        types.push(mt)
      } else if (/^data:/i.test(url)) {
        // Inline data that is not a base64 image (an archive, a document…) is not an image: refused by type, never passed on.
        throw new TollgateError('attachment_rejected', undefined, `${param}[${i}].image_url.url`)
      } else sameFormatOnly = true // a remote image URL: only an OpenAI-compatible upstream fetches it
    } else if (typeof part['type'] === 'string' && /^[a-z_]{1,64}$/.test(part['type'])) sameFormatOnly = true
    else throw bad(`${param}[${i}].type`)
  })
  return { parts, sameFormatOnly }
}

/** The OpenAI Chat Completions API (`POST /v1/chat/completions`). */
export const openaiWire: Wire = {
  format: 'openai',

  parse(body): ModelRequest {
    const b = object(body, 'body')
    const model = modelName(b['model'])
    const types: string[] = []
    let sameFormatOnly = b['tools'] !== undefined || b['functions'] !== undefined || b['tool_choice'] !== undefined || (b['n'] !== undefined && b['n'] !== 1)
    const system: Content[] = []
    const messages: Message[] = []
    array(b['messages'], 'messages', 1, 100_000).forEach((m, i) => {
      const msg = object(m, `messages[${i}]`)
      const role = msg['role']
      const c = parseContent(msg['content'], `messages[${i}].content`, types)
      sameFormatOnly ||= c.sameFormatOnly
      if (role === 'system' || role === 'developer') {
        if (c.parts.some((p) => p.kind !== 'text')) throw bad(`messages[${i}].content`)
        system.push(...c.parts.map((p) => (p.kind === 'text' ? p.text : Content.empty)))
      } else if (role === 'user' || role === 'assistant') {
        if (msg['tool_calls'] !== undefined || msg['function_call'] !== undefined) sameFormatOnly = true
        messages.push({ role, parts: c.parts })
      } else if (role === 'tool' || role === 'function') sameFormatOnly = true
      else throw bad(`messages[${i}].role`)
    })
    const streamOptions = b['stream_options'] === undefined || b['stream_options'] === null ? undefined : object(b['stream_options'], 'stream_options')
    if (streamOptions) optBool(streamOptions['include_usage'], 'stream_options.include_usage')
    return {
      model,
      system: system.length > 0 ? joinContent(system) : undefined,
      messages,
      maxTokens: optInt(b['max_completion_tokens'], 'max_completion_tokens', 1, 1_000_000) ?? optInt(b['max_tokens'], 'max_tokens', 1, 1_000_000),
      temperature: optNumber(b['temperature'], 'temperature', 0, 2),
      topP: optNumber(b['top_p'], 'top_p', 0, 1),
      stop: optStringList(b['stop'], 'stop', 4),
      stream: optBool(b['stream'], 'stream') ?? false,
      sameFormatOnly,
      attachmentTypes: types,
      passthrough: { format: 'openai', body: b, headers: {} },
    }
  },

  respond(res: ModelResponse, ctx: ReplyContext) {
    if (res.raw?.format === 'openai') return res.raw.body
    const input = res.usage.inputTokens ?? 0
    const output = res.usage.outputTokens ?? 0
    return JSON.stringify({
      id: `chatcmpl-${ctx.decisionId}`, object: 'chat.completion', created: ctx.createdS, model: ctx.model,
      choices: [{ index: 0, message: { role: 'assistant', content: res.text.reveal(), refusal: null }, logprobs: null, finish_reason: STOP_OUT[res.stopReason] }],
      usage: { prompt_tokens: input, completion_tokens: output, total_tokens: input + output },
    })
  },

  stream(ctx: ReplyContext, passthrough: boolean): StreamEncoder {
    let held: Buffer | undefined
    const chunk = (delta: object | null, finish: string | null, usage?: object) => sseEvent(undefined, JSON.stringify({
      id: `chatcmpl-${ctx.decisionId}`, object: 'chat.completion.chunk', created: ctx.createdS, model: ctx.model,
      choices: usage ? [] : [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      ...(usage ? { usage } : {}),
    }))
    return {
      start: () => (passthrough ? '' : chunk({ role: 'assistant', content: '' }, null)),
      event(e: ModelEvent) {
        if (passthrough && e.raw) {
          if (e.terminal) {
            held = e.raw
            return undefined
          }
          // Tollgate always asks upstream for usage; a client that did not ask never sees it.
          if (!ctx.includeUsage && e.usage && !e.text && !e.stopReason) return undefined
          return e.raw
        }
        return e.text ? chunk({ content: e.text.reveal() }, null) : undefined
      },
      finish(s: { stopReason: StopReason; usage: Usage }) {
        if (passthrough) return held ?? 'data: [DONE]\n\n'
        const input = s.usage.inputTokens ?? 0
        const output = s.usage.outputTokens ?? 0
        return chunk({}, STOP_OUT[s.stopReason]) +
          (ctx.includeUsage ? chunk(null, null, { prompt_tokens: input, completion_tokens: output, total_tokens: input + output }) : '') +
          'data: [DONE]\n\n'
      },
      error: (code: ErrorCode) => sseEvent(undefined, JSON.stringify({ error: { message: ERRORS[code].message, type: errorType(ERRORS[code].status), param: null, code } })),
    }
  },

  replay(d) {
    const input = d.input_tokens ?? 0
    const output = d.output_tokens ?? 0
    return JSON.stringify({
      id: `chatcmpl-${d.id}`, object: 'chat.completion', created: Math.floor(d.created_at / 1000), model: d.model ?? 'other',
      choices: [{ index: 0, message: { role: 'assistant', content: null, refusal: null }, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: input, completion_tokens: output, total_tokens: input + output },
    })
  },

  error(code: ErrorCode, requestId: string, param?: string, reason?: string) {
    void requestId // OpenAI's error shape has no request id; it is in the x-request-id header.
    return JSON.stringify({ error: { message: errorMessage(code, undefined, reason), type: errorType(ERRORS[code].status), param: param ?? null, code } })
  },
}
