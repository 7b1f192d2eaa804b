/**
 * T10's machinery, Jepsen-style: a HISTORY of every operation a closed-loop client invoked and
 * what came of it (ok / fail / info = indeterminate), a seeded NEMESIS that SIGKILLs Tollgate
 * instances (real `serve` child processes, scripts/lib/instances.ts) and restarts them on the same
 * data, and the pieces the checker needs. Every loop here is bounded by a deadline or a count.
 */
import http from 'node:http'
import { startInstance, type Instance, type InstanceSpec } from '../../scripts/lib/instances.ts'

export { prng } from '../helpers/prng.ts'

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

// ------------------------------------------------------------------ HTTP with a classified result

export type HttpResult =
  | { readonly kind: 'response'; readonly status: number; readonly headers: http.IncomingHttpHeaders; readonly body: string }
  /** The connection was refused: the request never reached a server (a definite failure). */
  | { readonly kind: 'refused' }
  /** Reset, hang-up or timeout after the request may have been sent: the outcome is unknown. */
  | { readonly kind: 'unknown'; readonly reason: string }

export function post(url: string, path: string, headers: Record<string, string>, body: string, agent: http.Agent, timeoutMs = 15_000): Promise<HttpResult> {
  return new Promise((resolve) => {
    let done = false
    const finish = (r: HttpResult) => {
      if (done) return
      done = true
      resolve(r)
    }
    const u = new URL(path, url)
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent,
      headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers },
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => finish({ kind: 'response', status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', (e: NodeJS.ErrnoException) => finish({ kind: 'unknown', reason: e.code ?? 'response_error' }))
      res.on('aborted', () => finish({ kind: 'unknown', reason: 'aborted' }))
    })
    req.setTimeout(timeoutMs, () => {
      finish({ kind: 'unknown', reason: 'timeout' })
      req.destroy()
    })
    req.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ECONNREFUSED' ? { kind: 'refused' } : { kind: 'unknown', reason: e.code ?? 'error' }))
    req.end(body)
  })
}

// ------------------------------------------------------------------ the cluster under test

/** One instance slot: a name, a fixed port, its spec; the running process comes and goes. */
export interface Slot {
  readonly name: string
  readonly spec: InstanceSpec
  current: Instance | undefined
  /** Marked down just before a kill; up once the restarted process listens. */
  up: boolean
  /** When it last came up (performance.now()). */
  upSince: number
  /** When it first answered a request with a 2xx after its last start (0: not yet — e.g. the classifier model still loading). */
  servingSince: number
  /** Requests in flight on this slot right now (AI / admin), for the nemesis' report. */
  inflight: { ai: number; admin: number }
  readonly agent: http.Agent
  starts: number
  readonly startMs: number[]
}

export class Cluster {
  readonly slots: Slot[]
  #waiters: (() => void)[] = []

  constructor(specs: readonly InstanceSpec[]) {
    this.slots = specs.map((spec) => ({
      name: spec.name, spec, current: undefined, up: false, upSince: 0, servingSince: 0, inflight: { ai: 0, admin: 0 },
      agent: new http.Agent({ keepAlive: true, maxSockets: 64 }), starts: 0, startMs: [],
    }))
  }

  url(s: Slot): string {
    if (!s.current) throw new Error(`${s.name} is not running`)
    return s.current.url
  }

  /** Starts (or restarts, on the same data) one slot; no manual step: only `serve` again. */
  async start(s: Slot): Promise<void> {
    const t0 = performance.now()
    s.servingSince = 0
    s.current = await startInstance(s.spec)
    s.starts++
    s.startMs.push(performance.now() - t0)
    s.up = true
    s.upSince = performance.now()
    for (const w of this.#waiters.splice(0)) w()
  }

  /** A client saw a 2xx from this slot. */
  served(s: Slot): void {
    if (s.up && s.servingSince === 0) s.servingSince = performance.now()
  }

  /** kill -9, and wait until the process is gone. */
  async kill(s: Slot): Promise<void> {
    s.up = false
    s.servingSince = 0
    await s.current?.kill()
  }

  /** A live slot picked with `rand`, or undefined when none is up. */
  pick(rand: () => number): Slot | undefined {
    const up = this.slots.filter((s) => s.up)
    return up.length === 0 ? undefined : up[Math.floor(rand() * up.length)]
  }

  /** Resolves once some slot is up, or after `ms`. */
  waitUp(ms: number): Promise<void> {
    if (this.slots.some((s) => s.up)) return Promise.resolve()
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms)
      this.#waiters.push(() => {
        clearTimeout(t)
        resolve()
      })
    })
  }

  /** Graceful stop of every running instance (SIGTERM); the exits, for OPS-1. */
  async stopAll(): Promise<{ name: string; code: number | null; signal: string | null }[]> {
    const exits = await Promise.all(this.slots.map(async (s) => {
      s.up = false
      const e = s.current ? await s.current.stop(30_000) : { code: 0, signal: null }
      return { name: s.name, code: e.code, signal: e.signal }
    }))
    for (const s of this.slots) s.agent.destroy()
    return exits
  }

  /** Last resort in t.after: SIGKILL whatever still runs. */
  async killAll(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.current?.kill()))
    for (const s of this.slots) s.agent.destroy()
  }
}

// ------------------------------------------------------------------ the history

export type Outcome = 'ok' | 'fail' | 'info'

export interface Op {
  readonly n: number
  /** The Idempotency-Key (also inside the body, so each operation's prompt is unique). */
  readonly key: string
  readonly body: string
  readonly slot: string
  outcome: Outcome
  status: number | undefined
  /** x-tollgate-decision of a 2xx (AI) or the created resource's id (admin). */
  id: string | undefined
  requestId: string | undefined
  replayed: boolean
  reason: string | undefined
  /** For an info operation: what its retry with the same key resolved to. */
  resolved?: { status: number; id: string; replayed: boolean; slot: string; attempts: number }
}

export function classify(op: Op, r: HttpResult, idOf: (status: number, headers: http.IncomingHttpHeaders, body: string) => string | undefined): void {
  if (r.kind === 'refused') {
    op.outcome = 'fail'
    op.reason = 'refused'
  } else if (r.kind === 'unknown') {
    op.outcome = 'info'
    op.reason = r.reason
  } else {
    op.status = r.status
    op.requestId = typeof r.headers['x-request-id'] === 'string' ? r.headers['x-request-id'] : undefined
    op.replayed = r.headers['idempotent-replayed'] === 'true'
    if (r.status >= 200 && r.status < 300) {
      op.id = idOf(r.status, r.headers, r.body)
      op.outcome = op.id ? 'ok' : 'fail'
      if (!op.id) op.reason = 'ok_without_id'
    } else {
      op.outcome = 'fail'
      op.reason = `status_${r.status}`
    }
  }
}

export function counts(ops: readonly Op[]): { total: number; ok: number; fail: number; refused: number; info: number } {
  return {
    total: ops.length,
    ok: ops.filter((o) => o.outcome === 'ok').length,
    fail: ops.filter((o) => o.outcome === 'fail').length,
    refused: ops.filter((o) => o.reason === 'refused').length,
    info: ops.filter((o) => o.outcome === 'info').length,
  }
}

/**
 * After quiescence: each info operation is sent again with the same key and body (to a random live
 * instance) until it gets a definite 2xx — the replay of what was recorded, or the one execution.
 * 409 (the dead claimer's lock has not expired yet) and 5xx are retried; bounded by `deadline`.
 */
export async function resolveInfo(cluster: Cluster, ops: readonly Op[], send: (slot: Slot, op: Op) => Promise<HttpResult>,
  idOf: (status: number, headers: http.IncomingHttpHeaders, body: string) => string | undefined, rand: () => number, deadline: number, concurrency = 8): Promise<Op[]> {
  const queue = ops.filter((o) => o.outcome === 'info')
  const unresolved: Op[] = []
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < queue.length) {
      const op = queue[next++]!
      let attempts = 0
      while (performance.now() < deadline) {
        const slot = cluster.pick(rand)
        if (!slot) {
          await cluster.waitUp(1000)
          continue
        }
        attempts++
        const r = await send(slot, op)
        if (r.kind === 'response' && r.status >= 200 && r.status < 300) {
          const id = idOf(r.status, r.headers, r.body)
          if (id) {
            op.resolved = { status: r.status, id, replayed: r.headers['idempotent-replayed'] === 'true', slot: slot.name, attempts }
            break
          }
        }
        await sleep(r.kind === 'response' && r.status === 409 ? 300 : 100)
      }
      if (!op.resolved) unresolved.push(op)
    }
  }))
  return unresolved
}
