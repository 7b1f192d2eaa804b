import { Pool } from 'undici'
import { TollgateError } from '../core/errors.ts'

export interface UpstreamRequest {
  readonly url: URL
  readonly headers: Record<string, string>
  readonly body: string | Buffer
  readonly signal: AbortSignal
}

export interface UpstreamResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  /** The body as it arrives, with backpressure. Iterate it once, or call `bytes()` once. */
  readonly body: AsyncIterable<Buffer>
  bytes(): Promise<Buffer>
  /** Reads and throws away the body (used for error bodies, which are never forwarded or logged). */
  discard(): Promise<void>
}

export interface UpstreamHttpOptions {
  readonly connections: number
  readonly headersTimeoutMs: number
  readonly bodyTimeoutMs: number
}

/**
 * HTTP/1.1 client for provider calls: one undici Pool per origin, driven through the low-level
 * `dispatch` API (no WHATWG fetch/streams on the hot path: they cost ~1.5-2x the CPU here).
 * TLS certificates are always verified. Aborting `signal` cancels the upstream request.
 */
export class UpstreamHttp {
  readonly #pools = new Map<string, Pool>()

  constructor(private readonly opts: UpstreamHttpOptions) {}

  #pool(origin: string): Pool {
    let p = this.#pools.get(origin)
    if (!p) {
      p = new Pool(origin, {
        connections: this.opts.connections,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        headersTimeout: this.opts.headersTimeoutMs,
        bodyTimeout: this.opts.bodyTimeoutMs,
      })
      this.#pools.set(origin, p)
    }
    return p
  }

  post(req: UpstreamRequest): Promise<UpstreamResponse> {
    if (req.signal.aborted) return Promise.reject(new TollgateError('upstream_unreachable', { reason: 'aborted_before_send' }))
    return new Promise((resolve, reject) => {
      const body = new BodyQueue()
      let abort: ((err?: Error) => void) | undefined
      let settled = false
      const onAbort = () => abort?.(new Error('client aborted'))
      req.signal.addEventListener('abort', onAbort, { once: true })
      const done = () => req.signal.removeEventListener('abort', onAbort)
      this.#pool(req.url.origin).dispatch({
        method: 'POST',
        path: req.url.pathname + req.url.search,
        headers: { ...req.headers, 'content-length': String(Buffer.byteLength(req.body)) },
        body: req.body,
      }, {
        onConnect(a) {
          abort = a
          if (req.signal.aborted) a(new Error('client aborted'))
        },
        onHeaders(status, rawHeaders, resume) {
          const headers: Record<string, string> = {}
          for (let i = 0; i < rawHeaders.length; i += 2) headers[rawHeaders[i]!.toString('latin1').toLowerCase()] = rawHeaders[i + 1]!.toString('latin1')
          body.resume = resume
          settled = true
          resolve({ status, headers, body, bytes: () => body.collect(), discard: () => body.collect().then(() => undefined, () => undefined) })
          return true
        },
        onData(chunk) {
          return body.push(chunk)
        },
        onComplete() {
          done()
          body.end()
        },
        onError(err) {
          done()
          const mapped = mapTransportError(err, req.signal.aborted)
          if (!settled) {
            settled = true
            reject(mapped)
          } else body.fail(mapped)
        },
      })
    })
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.close()))
    this.#pools.clear()
  }
}

function mapTransportError(err: Error, aborted: boolean): TollgateError {
  const code = (err as { code?: string }).code ?? ''
  if (aborted) return new TollgateError('upstream_unreachable', { reason: 'aborted' })
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return new TollgateError('upstream_timeout', { reason: code })
  return new TollgateError('upstream_unreachable', { reason: code || err.name })
}

/** A push-to-pull bridge for response chunks that pauses the socket when the consumer lags. */
class BodyQueue implements AsyncIterable<Buffer> {
  resume: (() => void) | undefined
  readonly #chunks: Buffer[] = []
  #ended = false
  #error: Error | undefined
  #wake: (() => void) | undefined

  /** Returns false to pause the socket until the consumer drains the queue. */
  push(chunk: Buffer): boolean {
    this.#chunks.push(chunk)
    this.#wake?.()
    return this.#chunks.length < 16
  }

  end(): void {
    this.#ended = true
    this.#wake?.()
  }

  fail(err: Error): void {
    this.#error = err
    this.#wake?.()
  }

  async collect(): Promise<Buffer> {
    const parts: Buffer[] = []
    for await (const c of this) parts.push(c)
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (;;) {
      const c = this.#chunks.shift()
      if (c) {
        if (this.#chunks.length === 0) this.resume?.()
        yield c
        continue
      }
      if (this.#error) throw this.#error
      if (this.#ended) return
      await new Promise<void>((r) => (this.#wake = r))
      this.#wake = undefined
    }
  }
}
