import { TollgateError } from '../core/errors.ts'
import type { UpstreamHttp } from './http.ts'
import { SseParser, type SseEvent } from './sse.ts'

/** Maps an upstream HTTP status to a stable Tollgate code. The upstream body is never read into an error. */
export function upstreamStatusError(status: number, provider: string): TollgateError {
  const detail = { provider, upstream_status: status }
  if (status === 401 || status === 403) return new TollgateError('upstream_auth_failed', detail)
  if (status === 404) return new TollgateError('upstream_model_not_found', detail)
  if (status === 408 || status === 504) return new TollgateError('upstream_timeout', detail)
  if (status === 413) return new TollgateError('upstream_payload_too_large', detail)
  if (status === 429) return new TollgateError('upstream_rate_limited', detail)
  if (status === 400 || status === 422) return new TollgateError('upstream_rejected_request', detail)
  if (status >= 500) return new TollgateError('upstream_unavailable', detail)
  return new TollgateError('upstream_invalid_response', detail)
}

export interface JsonCall {
  readonly url: URL
  readonly headers: Record<string, string>
  readonly body: string
  readonly signal: AbortSignal
  readonly provider: string
}

/** POSTs JSON and returns the parsed 200 body plus its bytes; any other status becomes a TollgateError. */
export async function postJson(http: UpstreamHttp, c: JsonCall): Promise<{ json: Record<string, unknown>; bytes: Buffer }> {
  const res = await http.post({ url: c.url, headers: { 'content-type': 'application/json', accept: 'application/json', ...c.headers }, body: c.body, signal: c.signal })
  if (res.status !== 200) {
    await res.discard()
    throw upstreamStatusError(res.status, c.provider)
  }
  const bytes = await res.bytes()
  try {
    const json = JSON.parse(bytes.toString('utf8')) as unknown
    if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error('not an object')
    return { json: json as Record<string, unknown>, bytes }
  } catch {
    throw new TollgateError('upstream_invalid_response', { provider: c.provider, bytes: bytes.length })
  }
}

/** POSTs a streaming request; resolves once the upstream answered 200, then yields its SSE events. */
export async function postStream(http: UpstreamHttp, c: JsonCall): Promise<AsyncIterable<SseEvent>> {
  const res = await http.post({ url: c.url, headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...c.headers }, body: c.body, signal: c.signal })
  if (res.status !== 200) {
    await res.discard()
    throw upstreamStatusError(res.status, c.provider)
  }
  return (async function* () {
    const parser = new SseParser()
    for await (const chunk of res.body) yield* parser.push(chunk)
    const last = parser.end()
    if (last) yield last
  })()
}

/** JSON.parse for one upstream event; a malformed event is an upstream fault. */
export function parseEventJson(data: string, provider: string): Record<string, unknown> {
  try {
    const v = JSON.parse(data) as unknown
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>
  } catch {
    // fall through
  }
  throw new TollgateError('upstream_invalid_response', { provider, reason: 'bad_event' })
}

export function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined
}

export function obj(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined
}
