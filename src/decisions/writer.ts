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
  ) {}

  record(row: DecisionRecord): Promise<void> {
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
