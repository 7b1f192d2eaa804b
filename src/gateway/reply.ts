import type { ServerResponse } from 'node:http'

/**
 * The raw HTTP response of an AI request. AI routes write directly (no framework
 * serialization), so a stream's bytes leave as soon as they arrive.
 */
export class AiReply {
  constructor(
    private readonly res: ServerResponse,
    private readonly base: Readonly<Record<string, string>>,
  ) {}

  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded
  }

  get headersSent(): boolean {
    return this.res.headersSent
  }

  send(status: number, body: string | Buffer, headers: Readonly<Record<string, string>>): void {
    if (this.closed) return
    this.res.writeHead(status, { ...this.base, 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), ...headers })
    this.res.end(body)
  }

  startStream(headers: Readonly<Record<string, string>>): void {
    this.res.writeHead(200, { ...this.base, 'content-type': 'text/event-stream; charset=utf-8', 'x-accel-buffering': 'no', ...headers })
  }

  /** Writes a chunk; resolves at once unless the client is slow, then when its buffer drains. */
  write(chunk: string | Buffer): Promise<void> | undefined {
    if (chunk.length === 0 || this.closed) return undefined
    if (this.res.write(chunk)) return undefined
    return new Promise((resolve) => {
      const done = () => {
        this.res.off('drain', done)
        this.res.off('close', done)
        resolve()
      }
      this.res.on('drain', done)
      this.res.on('close', done)
    })
  }

  end(chunk?: string | Buffer): void {
    if (this.closed) return
    if (chunk && chunk.length > 0) this.res.end(chunk)
    else this.res.end()
  }
}
