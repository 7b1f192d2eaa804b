/**
 * Single requests with a stopwatch: the pre-flight check (each target answers each API/mode
 * correctly before it is measured) and the SSE timing probe (when does each streamed event
 * arrive, compared with the bare proxy).
 */
import http from 'node:http'
import { answerText } from '../mock-upstream.ts'
import { body, PATHS, type Api, type Mode } from './bodies.ts'

export interface Target {
  readonly name: string
  readonly base: string
  /** The process whose tree's CPU and memory are measured. */
  readonly pid: number
  readonly headers: Readonly<Record<Api, Readonly<Record<string, string>>>>
}

export interface Timed {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly text: string
  /** ms from sending the request to the response head. */
  readonly headMs: number
  /** Complete SSE events with the ms (from sending) at which their last byte arrived. */
  readonly events: { readonly raw: string; readonly atMs: number }[]
  readonly totalMs: number
}

const MAX_BYTES = 1 << 20

/** One POST, every SSE event time-stamped on arrival. Bounded by `timeoutMs`. */
export function timedPost(url: string, headers: Readonly<Record<string, string>>, payload: string, agent: http.Agent | false, timeoutMs = 10_000): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const req = http.request(url, {
      method: 'POST', agent,
      headers: { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) },
    }, (res) => {
      const headMs = performance.now() - t0
      const events: { raw: string; atMs: number }[] = []
      let text = ''
      let pending = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        const at = performance.now() - t0
        if (text.length + d.length > MAX_BYTES) {
          req.destroy(new Error('response too large'))
          return
        }
        text += d
        pending += d
        for (let i = pending.indexOf('\n\n'); i >= 0; i = pending.indexOf('\n\n')) {
          events.push({ raw: pending.slice(0, i), atMs: at })
          pending = pending.slice(i + 2)
        }
      })
      res.on('end', () => {
        clearTimeout(timer)
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, headMs, events, totalMs: performance.now() - t0 })
      })
      res.on('error', reject)
    })
    const timer = setTimeout(() => req.destroy(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs)
    req.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    req.end(payload)
  })
}

function eventData(raw: string): string | undefined {
  const lines = raw.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart())
  return lines.length > 0 ? lines.join('\n') : undefined
}

/** The text deltas of a stream, and whether it ended with the API's terminator. */
export function streamText(api: Api, events: readonly { raw: string }[]): { text: string; deltas: number[]; terminated: boolean } {
  let text = ''
  const deltas: number[] = []
  let terminated = false
  events.forEach((e, i) => {
    const data = eventData(e.raw)
    if (data === undefined) return
    if (api === 'openai') {
      if (data === '[DONE]') {
        terminated = i === events.length - 1
        return
      }
      const c = (JSON.parse(data) as { choices?: { delta?: { content?: string } }[] }).choices?.[0]?.delta?.content
      if (typeof c === 'string' && c.length > 0) {
        text += c
        deltas.push(i)
      }
    } else {
      const j = JSON.parse(data) as { type?: string; delta?: { type?: string; text?: string } }
      if (j.type === 'message_stop') terminated = i === events.length - 1
      else if (j.type === 'content_block_delta' && j.delta?.type === 'text_delta' && typeof j.delta.text === 'string') {
        text += j.delta.text
        deltas.push(i)
      }
    }
  })
  return { text, deltas, terminated }
}

/** Pre-flight: status 200, the mock's answer text, and for streams the terminator as last event. */
export async function verify(t: Target, api: Api, mode: Mode): Promise<{ ok: true } | { ok: false; reason: string }> {
  let r: Timed
  try {
    r = await timedPost(t.base + PATHS[api], t.headers[api], body(api, mode), false)
  } catch (err) {
    return { ok: false, reason: `request failed: ${(err as Error).message}` }
  }
  if (r.status !== 200) return { ok: false, reason: `HTTP ${r.status}: ${r.text.slice(0, 200)}` }
  const want = answerText()
  try {
    if (mode === 'json') {
      const j = JSON.parse(r.text) as { choices?: { message?: { content?: string } }[]; content?: { text?: string }[] }
      const got = api === 'openai' ? j.choices?.[0]?.message?.content : j.content?.[0]?.text
      if (got !== want) return { ok: false, reason: `answer text ${JSON.stringify(got)} != ${JSON.stringify(want)}` }
      return { ok: true }
    }
    if (!String(r.headers['content-type'] ?? '').startsWith('text/event-stream')) return { ok: false, reason: `content-type ${r.headers['content-type']}` }
    const s = streamText(api, r.events)
    if (s.text !== want) return { ok: false, reason: `streamed text ${JSON.stringify(s.text)} != ${JSON.stringify(want)}` }
    if (!s.terminated) return { ok: false, reason: `stream did not end with ${api === 'openai' ? '[DONE]' : 'message_stop'}` }
    return { ok: true }
  } catch (err) {
    return { ok: false, reason: `unparseable answer: ${(err as Error).message}` }
  }
}

export interface SseTiming {
  readonly target: string
  readonly requests: number
  readonly chunks: number
  readonly gapMs: number
  /** Medians over the requests, ms. */
  readonly headMs: number
  readonly firstDeltaMs: number
  /** First content delta → last content delta. */
  readonly spanMs: number
  /** Median and p99 over every gap between consecutive content deltas. */
  readonly gapMedianMs: number
  readonly gapP99Ms: number
  /** Last content delta → terminator event. */
  readonly tailMs: number
  readonly totalMs: number
}

const median = (xs: number[]) => quantile(xs, 0.5)
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const pos = (s.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo)
}

/**
 * The SSE timing probe: `n` streamed requests per target at one connection, interleaved across
 * targets, the mock pacing `chunks` deltas `gapMs` apart. A gateway that adds per-event work or
 * delays shows it as a longer span (and wider gaps) than the bare proxy's.
 */
export async function sseTimingProbe(targets: readonly Target[], api: Api, n: number, gapMs: number, chunks: number): Promise<SseTiming[]> {
  // With the usage chunk requested, the mock streams the same events whichever target asks
  // (Tollgate always requests it upstream), so the tails are comparable.
  const payload = body(api, 'sse', { probe: { gapMs, chunks }, includeUsage: true })
  const agents = targets.map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }))
  const samples = targets.map(() => ({ head: [] as number[], first: [] as number[], span: [] as number[], gaps: [] as number[], tail: [] as number[], total: [] as number[] }))
  try {
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < targets.length; k++) {
        const t = targets[(k + i) % targets.length]!
        const idx = targets.indexOf(t)
        const r = await timedPost(t.base + PATHS[api], t.headers[api], payload, agents[idx]!, 10_000 + gapMs * chunks)
        if (r.status !== 200) throw new Error(`${t.name}: SSE probe got HTTP ${r.status}`)
        const s = streamText(api, r.events)
        if (s.deltas.length !== chunks || !s.terminated) throw new Error(`${t.name}: SSE probe got ${s.deltas.length}/${chunks} deltas, terminated=${s.terminated}`)
        const at = s.deltas.map((d) => r.events[d]!.atMs)
        const smp = samples[idx]!
        smp.head.push(r.headMs)
        smp.first.push(at[0]!)
        smp.span.push(at.at(-1)! - at[0]!)
        for (let j = 1; j < at.length; j++) smp.gaps.push(at[j]! - at[j - 1]!)
        smp.tail.push(r.events.at(-1)!.atMs - at.at(-1)!)
        smp.total.push(r.totalMs)
      }
    }
  } finally {
    for (const a of agents) a.destroy()
  }
  return targets.map((t, i) => {
    const s = samples[i]!
    return {
      target: t.name, requests: n, chunks, gapMs,
      headMs: median(s.head), firstDeltaMs: median(s.first), spanMs: median(s.span),
      gapMedianMs: median(s.gaps), gapP99Ms: quantile(s.gaps, 0.99), tailMs: median(s.tail), totalMs: median(s.total),
    }
  })
}
