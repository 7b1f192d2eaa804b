/**
 * Incremental Server-Sent Events framing: bytes in, complete events out, each with its exact
 * original bytes (so a same-format client receives them unchanged).
 */
export interface SseEvent {
  readonly raw: Buffer
  readonly event: string | undefined
  readonly data: string
}

const LF = 0x0a
const CR = 0x0d

export class SseParser {
  #buf: Buffer = Buffer.alloc(0)

  /** Feeds a chunk; returns every event it completes. */
  push(chunk: Buffer): SseEvent[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk])
    const out: SseEvent[] = []
    let start = 0
    for (;;) {
      const end = findBoundary(this.#buf, start)
      if (end < 0) break
      const raw = this.#buf.subarray(start, end)
      start = end
      const ev = parseEvent(raw)
      if (ev) out.push(ev)
    }
    this.#buf = start === 0 ? this.#buf : Buffer.from(this.#buf.subarray(start))
    return out
  }

  /** Whatever is left when the stream ends (an unterminated last event). */
  end(): SseEvent | undefined {
    if (this.#buf.length === 0) return undefined
    const ev = parseEvent(this.#buf)
    this.#buf = Buffer.alloc(0)
    return ev
  }
}

/** Index just past the blank line that ends the event starting at `from`, or -1. */
function findBoundary(b: Buffer, from: number): number {
  for (let i = b.indexOf(LF, from); i >= 0 && i < b.length; i = b.indexOf(LF, i + 1)) {
    if (b[i + 1] === LF) return i + 2
    if (b[i + 1] === CR && b[i + 2] === LF) return i + 3
  }
  return -1
}

function parseEvent(raw: Buffer): SseEvent | undefined {
  let event: string | undefined
  const data: string[] = []
  for (const line of raw.toString('utf8').split(/\r?\n/)) {
    if (line === '' || line.startsWith(':')) continue
    const colon = line.indexOf(':')
    const field = colon < 0 ? line : line.slice(0, colon)
    let value = colon < 0 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'event') event = value
    else if (field === 'data') data.push(value)
  }
  if (event === undefined && data.length === 0) return undefined
  return { raw, event, data: data.join('\n') }
}

export function sseEvent(name: string | undefined, data: string): string {
  return name === undefined ? `data: ${data}\n\n` : `event: ${name}\ndata: ${data}\n\n`
}
