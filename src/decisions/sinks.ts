import { Worker } from 'node:worker_threads'
import type { Kysely } from 'kysely'
import type { DB } from '../storage/schema.ts'
import { SQLITE_PRAGMAS } from '../storage/sqlite.ts'
import { DECISION_COLUMNS, type DecisionRecord, type DecisionSink } from './record.ts'

/** Batches as one multi-row INSERT (one transaction, one WAL flush) through Kysely: PostgreSQL. */
export class KyselyDecisionSink implements DecisionSink {
  constructor(private readonly db: Kysely<DB>) {}

  async write(rows: readonly DecisionRecord[]): Promise<void> {
    await this.db.insertInto('decision').values([...rows]).execute()
  }

  async close(): Promise<void> {}
}

type Reply = { id: number; ok: true } | { id: number; ok: false; code: string }

/**
 * SQLite batches committed on a dedicated worker thread with its own connection, so the
 * commit's fsync (synchronous=FULL) never blocks the event loop serving requests.
 */
export class SqliteWorkerDecisionSink implements DecisionSink {
  readonly #worker: Worker
  readonly #pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>()
  #next = 1
  #dead: Error | undefined

  constructor(path: string) {
    this.#worker = new Worker(new URL('./sqlite-writer.worker.mjs', import.meta.url), {
      workerData: { path, columns: DECISION_COLUMNS, pragmas: SQLITE_PRAGMAS },
      // Small records in, acknowledgements out: a small young generation is plenty (the default grows to 32+ MB).
      resourceLimits: { maxYoungGenerationSizeMb: 4 },
    })
    this.#worker.on('message', (m: Reply) => {
      const p = this.#pending.get(m.id)
      if (!p) return
      this.#pending.delete(m.id)
      if (m.ok) p.resolve()
      else p.reject(Object.assign(new Error('decision write failed'), { code: m.code }))
    })
    const fail = (err: Error) => {
      this.#dead = err
      for (const p of this.#pending.values()) p.reject(err)
      this.#pending.clear()
    }
    this.#worker.on('error', fail)
    this.#worker.on('exit', () => fail(new Error('decision writer thread exited')))
  }

  #call(msg: object): Promise<void> {
    if (this.#dead) return Promise.reject(this.#dead)
    const id = this.#next++
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      this.#worker.postMessage({ id, ...msg })
    })
  }

  write(rows: readonly DecisionRecord[]): Promise<void> {
    return this.#call({ type: 'write', rows: rows.map((r) => DECISION_COLUMNS.map((c) => r[c])) })
  }

  async close(): Promise<void> {
    if (!this.#dead) await this.#call({ type: 'close' }).catch(() => undefined)
    await this.#worker.terminate()
  }
}
