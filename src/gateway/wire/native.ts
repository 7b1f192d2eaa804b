import { TextDecoder } from 'node:util'
import { Content } from '../../core/content.ts'
import { ERRORS, TollgateError, type ErrorCode } from '../../core/errors.ts'
import { IMAGE_TYPES, type ImageType, type ModelEvent, type ModelRequest, type ModelResponse, type Part, type StopReason, type Usage } from '../../core/model.ts'
import { sseEvent } from '../../providers/sse.ts'
import { array, bad, imagePart, modelName, object, optBool, optInt, optNumber, optString, optStringList, string } from './validate.ts'
import { REASON, type ReplyContext, type StreamEncoder, type Wire } from './wire.ts'

/** The native API's decision object: outcome, rule and reason codes, redacted kinds, the challenge. */
function decisionJson(ctx: ReplyContext): Record<string, unknown> {
  const d = ctx.decision
  const c = d.challenge
  return {
    outcome: d.outcome,
    rule_id: d.ruleId,
    reason: d.reason !== null && REASON.test(d.reason) ? d.reason : null,
    ...(d.redacted.length > 0 ? { redacted: d.redacted } : {}),
    ...(d.reasoningScore !== undefined ? { challenge_passed: true, reasoning_score: d.reasoningScore } : {}),
    ...(c ? {
      challenge: {
        id: c.id, question: c.question, expires_at: new Date(c.expiresAt).toISOString(), attempts_left: c.attemptsLeft,
        ...(c.feedback ? { feedback: c.feedback, passed: false, reasoning_score: c.reasoningScore ?? null } : {}),
      },
    } : {}),
  }
}

/** Text attachment types: decoded in memory (strict UTF-8) and given to the model as text. */
export const TEXT_ATTACHMENT_TYPES = ['text/plain', 'text/markdown', 'text/csv', 'application/json'] as const
/** The structural ceiling; the real count limit is TOLLGATE_MAX_ATTACHMENTS, checked before parsing (limits.ts). */
const MAX_ATTACHMENTS = 1000

const FIELDS = new Set(['model', 'prompt', 'system', 'attachments', 'max_tokens', 'temperature', 'top_p', 'stop', 'stream'])
const ATTACHMENT_FIELDS = new Set(['mime_type', 'data', 'filename'])
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const utf8 = new TextDecoder('utf-8', { fatal: true })

function attachment(v: unknown, i: number): Part {
  const param = `attachments[${i}]`
  const a = object(v, param)
  for (const k of Object.keys(a)) if (!ATTACHMENT_FIELDS.has(k)) throw bad(`${param}`)
  // The filename is accepted for client convenience and ignored: never used as a path, never stored.
  optString(a['filename'], `${param}.filename`, 255)
  const type = a['mime_type']
  const data = a['data']
  if (typeof type !== 'string') throw bad(`${param}.mime_type`)
  if ((IMAGE_TYPES as readonly string[]).includes(type)) return imagePart(type as ImageType, data, `${param}.data`)
  if (!(TEXT_ATTACHMENT_TYPES as readonly string[]).includes(type)) throw new TollgateError('attachment_rejected', undefined, `${param}.mime_type`)
  if (typeof data !== 'string' || data.length % 4 !== 0 || !BASE64.test(data)) throw new TollgateError('attachment_rejected', undefined, `${param}.data`)
  let text: string
  try {
    text = utf8.decode(Buffer.from(data, 'base64'))
  } catch {
    throw new TollgateError('attachment_rejected', undefined, `${param}.data`)
  }
  return { kind: 'text', text: Content.of(`[attachment ${i + 1}: ${type}]\n${text}`) }
}

/**
 * Tollgate's native API (`POST /v1/intercept`): a prompt, optional attachments and a model in;
 * the decision and the model's output out. Unknown fields are rejected.
 */
export const nativeWire: Wire = {
  format: 'native',

  parse(body): ModelRequest {
    const b = object(body, 'body')
    for (const k of Object.keys(b)) if (!FIELDS.has(k)) throw bad('body')
    const model = modelName(b['model'])
    const prompt = string(b['prompt'], 'prompt')
    if (prompt.length === 0) throw bad('prompt')
    const system = optString(b['system'], 'system')
    const attachments = b['attachments'] === undefined ? [] : array(b['attachments'], 'attachments', 0, MAX_ATTACHMENTS).map(attachment)
    const types = b['attachments'] === undefined ? [] : (b['attachments'] as { mime_type: string }[]).map((a) => a.mime_type)
    return {
      model,
      system: system === undefined ? undefined : Content.of(system),
      messages: [{ role: 'user', parts: [{ kind: 'text', text: Content.of(prompt) }, ...attachments] }],
      maxTokens: optInt(b['max_tokens'], 'max_tokens', 1, 1_000_000),
      temperature: optNumber(b['temperature'], 'temperature', 0, 2),
      topP: optNumber(b['top_p'], 'top_p', 0, 1),
      stop: optStringList(b['stop'], 'stop'),
      stream: optBool(b['stream'], 'stream') ?? false,
      sameFormatOnly: false,
      attachmentTypes: types,
      passthrough: undefined,
    }
  },

  respond(res: ModelResponse, ctx: ReplyContext) {
    const challenged = ctx.decision.outcome === 'challenge'
    return JSON.stringify({
      id: ctx.decisionId,
      request_id: ctx.requestId,
      decision: decisionJson(ctx),
      model: ctx.model,
      provider: challenged ? null : ctx.provider,
      ...(ctx.fallback && !challenged ? { notice: 'No upstream provider is configured for this model; the built-in local provider answered.' } : {}),
      output: challenged ? null : { text: res.text.reveal() },
      stop_reason: challenged ? null : res.stopReason,
      usage: { input_tokens: res.usage.inputTokens ?? null, output_tokens: res.usage.outputTokens ?? null },
    })
  },

  stream(ctx: ReplyContext): StreamEncoder {
    return {
      start: () => sseEvent('decision', JSON.stringify({ id: ctx.decisionId, request_id: ctx.requestId, decision: decisionJson(ctx), model: ctx.model, provider: ctx.decision.outcome === 'challenge' ? null : ctx.provider, fallback: ctx.fallback })),
      // A challenge's question is in the decision event; its text is not repeated as output.
      event: (e: ModelEvent) => (e.text && ctx.decision.outcome !== 'challenge' ? sseEvent('delta', JSON.stringify({ text: e.text.reveal() })) : undefined),
      finish: (s: { stopReason: StopReason; usage: Usage }) =>
        sseEvent('done', JSON.stringify({ stop_reason: s.stopReason, usage: { input_tokens: s.usage.inputTokens ?? null, output_tokens: s.usage.outputTokens ?? null } })),
      error: (code: ErrorCode) => sseEvent('error', JSON.stringify({ error: { code, message: ERRORS[code].message } })),
    }
  },

  replay(d) {
    return JSON.stringify({
      id: d.id, request_id: d.request_id, replayed: true, decision: { outcome: d.friction ?? 'allow', rule_id: d.rule_id },
      model: d.model, provider: d.provider, output: null,
      usage: { input_tokens: d.input_tokens, output_tokens: d.output_tokens },
    })
  },

  error(code: ErrorCode, requestId: string, param?: string, reason?: string) {
    return JSON.stringify({ error: { code, message: ERRORS[code].message, ...(param ? { param } : {}), ...(reason && REASON.test(reason) ? { reason } : {}), request_id: requestId } })
  },
}
