import type { DecisionRecord, DecisionSink } from './record.ts'

interface Pending {
  readonly row: DecisionRecord
  readonly resolve: () => void
  readonly reject: (err: unknown) => void
}

export interface WriterObserver {
  batch(size: number, ms: number, ok: boolean): void
}

/**
 * Group commit for decision records (D8). `record()` resolves once the row is durable. Rows
 * arriving while a batch commits wait for the next one, so under load many requests share one
 * transaction (one fsync) while an idle server commits each row at once.
 *
 * When only one request is in flight (`alone`) and nothing is queued, a sink that can write on
 * the calling thread (SQLite) commits the row there: the round trip to a writer thread costs as
 * much as the commit itself (~0.15 ms of ~0.45 ms here), and the event loop has nobody else to
 * serve meanwhile. If another connection holds the write lock, the row takes the queue instead.
 */
export class DecisionWriter {
  readonly #queue: Pending[] = []
  #flushing = false
  #scheduled = false
  #idle: (() => void)[] = []

  constructor(
    private readonly sink: DecisionSink,
    private readonly batchMax: number,
    private readonly observer: WriterObserver = { batch: () => {} },
    private readonly alone: () => boolean = () => false,
  ) {}

  record(row: DecisionRecord): Promise<void> {
    if (this.sink.writeNow && !this.#flushing && !this.#scheduled && this.#queue.length === 0 && this.alone()) {
      const t0 = performance.now()
      try {
        if (this.sink.writeNow([row])) {
          this.observer.batch(1, performance.now() - t0, true)
          return Promise.resolve()
        }
      } catch (err) {
        this.observer.batch(1, performance.now() - t0, false)
        return Promise.reject(err)
      }
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ row, resolve, reject })
      this.#schedule()
    })
  }

  /** Resolves when every record handed in so far is committed (or failed). */
  drain(): Promise<void> {
    if (!this.#flushing && !this.#scheduled && this.#queue.length === 0) return Promise.resolve()
    return new Promise((r) => this.#idle.push(r))
  }

  async close(): Promise<void> {
    await this.drain()
    await this.sink.close()
  }

  #schedule(): void {
    if (this.#flushing || this.#scheduled) return
    this.#scheduled = true
    // setImmediate, not a microtask: records from the same event-loop turn join this batch.
    setImmediate(() => void this.#flush())
  }

  async #flush(): Promise<void> {
    this.#scheduled = false
    const batch = this.#queue.splice(0, this.batchMax)
    if (batch.length > 0) {
      this.#flushing = true
      const t0 = performance.now()
      try {
        await this.sink.write(batch.map((p) => p.row))
        this.observer.batch(batch.length, performance.now() - t0, true)
        for (const p of batch) p.resolve()
      } catch (err) {
        this.observer.batch(batch.length, performance.now() - t0, false)
        for (const p of batch) p.reject(err)
      } finally {
        this.#flushing = false
      }
    }
    if (this.#queue.length > 0) this.#schedule()
    else for (const r of this.#idle.splice(0)) r()
  }
}
