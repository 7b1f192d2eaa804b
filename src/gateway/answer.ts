import { OutputScreener } from '../classify/output.ts'
import { Content } from '../core/content.ts'
import { ERRORS, TollgateError, type ErrorCode } from '../core/errors.ts'
import type { ModelEvent, ModelRequest, ModelResponse, StopReason, Usage } from '../core/model.ts'
import type { Stop } from '../core/stop.ts'
import type { DecisionRecord } from '../decisions/record.ts'
import { keepsOutcome } from '../idempotency/claim.ts'
import { safeError } from '../observe/log.ts'
import { evaluateOutput } from '../policy/evaluate.ts'
import type { PolicyDocument } from '../policy/document.ts'
import type { Route } from '../providers/registry.ts'
import type { Outcome, Trace } from './context.ts'
import type { AiRequest, GatewayDeps } from './pipeline.ts'
import type { AiReply } from './reply.ts'
import type { ReplyContext, Wire } from './wire/wire.ts'

/**
 * How an AI request is answered once the pipeline has decided: the provider's answer (JSON or a
 * stream, screened when the policy moderates outputs), a stop in the client's error format, a
 * challenge, or an idempotent replay. Every answer after authentication commits its decision
 * record first (D8); a stream's final event waits for it.
 */

/** Output moderation for one answer (GW-6): the policy whose output filters apply. */
export interface OutputScreen {
  readonly doc: PolicyDocument
}

export async function jsonAnswer(req: AiRequest, request: ModelRequest, route: Route, ctx: ReplyContext, trace: Trace, d: GatewayDeps, reply: AiReply, screen: OutputScreen | undefined, outcome: Outcome): Promise<void> {
  let answer: ModelResponse
  try {
    answer = await trace.time('upstream', () => route.provider.complete(request, { signal: req.signal, model: route.model }))
  } catch (err) {
    return upstreamFailed(err, req, trace, d, reply)
  }
  d.metrics.upstream.inc({ provider: route.provider.name, result: 'ok' })
  trace.usage = answer.usage
  if (screen && blocks(screen, await trace.time('moderate', () => OutputScreener.whole(answer.text, req.signal)))) {
    return stopRecorded(req.wire, trace, d, reply, { code: 'output_blocked' }, 'output_blocked')
  }
  const body = req.wire.respond(answer, ctx)
  if (!(await commit(trace, d, outcome, 200, null))) return sendError(req.wire, trace, reply, { code: 'storage_unavailable' })
  reply.send(200, body, answerHeaders(trace, ctx))
}

export async function streamAnswer(req: AiRequest, request: ModelRequest, route: Route, ctx: ReplyContext, trace: Trace, d: GatewayDeps, reply: AiReply, screen: OutputScreen | undefined, outcome: Outcome): Promise<void> {
  let events: AsyncIterable<ModelEvent>
  try {
    events = await trace.time('upstream', () => route.provider.stream(request, { signal: req.signal, model: route.model }))
  } catch (err) {
    return upstreamFailed(err, req, trace, d, reply)
  }
  const enc = req.wire.stream(ctx, route.provider.format === req.wire.format)
  reply.startStream(answerHeaders(trace, ctx))
  await reply.write(enc.start())
  let stopReason: StopReason = 'other'
  let usage: Usage = { inputTokens: undefined, outputTokens: undefined }
  const screener = screen ? new OutputScreener() : undefined
  try {
    for await (const ev of events) {
      if (ev.stopReason) stopReason = ev.stopReason
      if (ev.usage) usage = mergeUsage(usage, ev.usage)
      // GW-6: a delta is released only after the text around it passed the output screen.
      if (screen && screener && ev.text) {
        const text = ev.text
        if (blocks(screen, await trace.time('moderate', () => screener.add(text, req.signal)))) {
          trace.usage = usage
          await commit(trace, d, 'output_blocked', ERRORS.output_blocked.status, 'output_blocked')
          return reply.end(enc.error('output_blocked'))
        }
      }
      const out = enc.event(ev)
      if (ev.terminal) break
      if (out) await reply.write(out)
    }
  } catch (err) {
    trace.usage = usage
    if (req.signal.aborted) {
      await commit(trace, d, 'aborted', 499, 'upstream_unreachable')
      return reply.end()
    }
    const code = failureCode(err)
    d.metrics.upstream.inc({ provider: route.provider.name, result: code })
    if (!(err instanceof TollgateError)) d.log.error({ reqId: req.requestId, err: safeError(err) }, 'stream failed')
    await commit(trace, d, 'upstream_error', ERRORS[code].status, code)
    return reply.end(enc.error(code))
  }
  d.metrics.upstream.inc({ provider: route.provider.name, result: 'ok' })
  trace.usage = usage
  // D8: the final event leaves only after the decision record is durable.
  if (!(await commit(trace, d, outcome, 200, null))) return reply.end(enc.error('storage_unavailable'))
  reply.end(enc.finish({ stopReason, usage }))
}

/** An answer Tollgate writes itself (a challenge's question): an ordinary assistant message, JSON or streamed. */
export async function textAnswer(req: AiRequest, text: string, ctx: ReplyContext, trace: Trace, d: GatewayDeps, reply: AiReply, stream: boolean, outcome: Outcome): Promise<void> {
  const usage: Usage = { inputTokens: 0, outputTokens: 0 }
  if (!(await commit(trace, d, outcome, 200, null))) return sendError(req.wire, trace, reply, { code: 'storage_unavailable' })
  if (!stream) return reply.send(200, req.wire.respond({ text: Content.of(text), stopReason: 'end_turn', usage, raw: undefined }, ctx), answerHeaders(trace, ctx))
  const enc = req.wire.stream(ctx, false)
  reply.startStream(answerHeaders(trace, ctx))
  await reply.write(enc.start())
  const out = enc.event({ format: 'local', raw: undefined, text: Content.of(text) })
  if (out) await reply.write(out)
  reply.end(enc.finish({ stopReason: 'end_turn', usage }))
}

/** The answer to a completed duplicate: the recorded decision in the client's format, marked as a replay. */
export function replayAnswer(req: AiRequest, row: DecisionRecord | undefined, trace: Trace, reply: AiReply): void {
  if (!row) return sendError(req.wire, trace, reply, { code: 'idempotency_in_flight' })
  const headers = { ...trace.headers, 'x-request-id': trace.requestId, 'request-id': trace.requestId, 'server-timing': trace.serverTiming(), 'idempotent-replayed': 'true', 'x-tollgate-decision': row.id }
  // The body names the request that was decided (as the first answer did), so every replay is the same bytes.
  if (row.status >= 400 && row.error_code && row.error_code in ERRORS) return reply.send(row.status, req.wire.error(row.error_code as ErrorCode, row.request_id, undefined, row.reason ?? undefined), headers)
  reply.send(200, req.wire.replay(row), headers)
}

function blocks(screen: OutputScreen, facts: Parameters<typeof evaluateOutput>[1]): boolean {
  return evaluateOutput(screen.doc, facts).action === 'block'
}

export async function upstreamFailed(err: unknown, req: AiRequest, trace: Trace, d: GatewayDeps, reply: AiReply): Promise<void> {
  // The client went away: not an upstream failure, and nobody to answer.
  if (req.signal.aborted) {
    await commit(trace, d, 'aborted', 499, 'upstream_unreachable')
    return reply.end()
  }
  const code = failureCode(err)
  d.metrics.upstream.inc({ provider: trace.provider ?? 'unknown', result: code })
  if (!(err instanceof TollgateError)) d.log.error({ reqId: req.requestId, err: safeError(err) }, 'upstream call failed')
  else d.log.warn({ reqId: req.requestId, code, provider: trace.provider ?? undefined, upstreamStatus: err.detail?.['upstream_status'] as number | undefined }, 'upstream call failed')
  return stopRecorded(req.wire, trace, d, reply, { code })
}

function failureCode(err: unknown): ErrorCode {
  return err instanceof TollgateError ? err.code : 'internal_error'
}

/** Records a stop as a decision, then answers it in the client's format. */
export async function stopRecorded(wire: Wire, trace: Trace, d: GatewayDeps, reply: AiReply, s: Stop, outcome?: Outcome): Promise<void> {
  const status = ERRORS[s.code].status
  const o: Outcome = outcome ?? (s.code.startsWith('upstream_') ? 'upstream_error' : status >= 500 ? 'error' : 'rejected')
  trace.reason = s.reason ?? null
  if (!(await commit(trace, d, o, status, s.code))) return sendError(wire, trace, reply, { code: 'storage_unavailable' })
  sendError(wire, trace, reply, s)
}

/** Commits the decision record; false when it could not be made durable (the client then gets 503). */
export async function commit(trace: Trace, d: GatewayDeps, outcome: Outcome, status: number, code: ErrorCode | null): Promise<boolean> {
  try {
    await trace.time('record', () => d.decisions.record(trace.record(outcome, status, code)))
    trace.committed = { status }
    d.metrics.decisions.inc({ outcome, endpoint: trace.endpoint })
    // LIMIT-2: the Idempotency-Key is settled with the record, before the answer leaves — a retry
    // sent the moment the answer arrives gets the replay (or a key free again), never a 409.
    if (trace.idempotency) await settleIdempotency(trace, d, outcome === 'aborted')
    return true
  } catch (err) {
    d.metrics.decisionWriteFailures.inc()
    d.log.error({ reqId: trace.requestId, err: safeError(err) }, 'decision record not committed')
    return false
  }
}

/**
 * Records the outcome under the claimed key, or forgets the key when no operation completed.
 * Runs once: at the commit, or when the request ends without one.
 */
export async function settleIdempotency(trace: Trace, d: GatewayDeps, aborted: boolean): Promise<void> {
  const c = trace.idempotency!
  trace.idempotency = undefined
  try {
    if (!aborted && trace.committed && keepsOutcome(trace.committed.status)) {
      await d.idempotency.complete(c.scope, c.keyHash, { status: trace.committed.status, responseSealed: null, decisionId: trace.decisionId })
    } else await d.idempotency.release(c.scope, c.keyHash)
  } catch (err) {
    // The claim's lock expires on its own: the key is usable again after TOLLGATE_IDEMPOTENCY_LOCK_S.
    d.log.error({ reqId: trace.requestId, err: safeError(err) }, 'idempotency record not settled')
  }
}

export function sendError(wire: Wire, trace: Trace, reply: AiReply, s: Stop): void {
  reply.send(ERRORS[s.code].status, wire.error(s.code, trace.requestId, s.param, s.reason), {
    ...trace.headers, 'x-request-id': trace.requestId, 'request-id': trace.requestId, 'server-timing': trace.serverTiming(), ...s.headers,
  })
}

function answerHeaders(trace: Trace, ctx: ReplyContext): Record<string, string> {
  return {
    ...trace.headers, 'x-request-id': trace.requestId, 'request-id': trace.requestId, 'server-timing': trace.serverTiming(),
    'x-tollgate-decision': trace.decisionId, 'x-tollgate-provider': ctx.provider,
    // GW-7: the answer says which kinds were redacted — never the values.
    ...(ctx.decision.redacted.length > 0 ? { 'x-tollgate-redacted': ctx.decision.redacted.join(',') } : {}),
    ...(ctx.decision.outcome === 'challenge' && ctx.decision.challenge ? { 'x-tollgate-challenge': ctx.decision.challenge.id } : {}),
  }
}

function mergeUsage(a: Usage, b: Partial<Usage>): Usage {
  return { inputTokens: b.inputTokens ?? a.inputTokens, outputTokens: b.outputTokens ?? a.outputTokens }
}
