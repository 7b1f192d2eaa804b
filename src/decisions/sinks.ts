import { Worker } from 'node:worker_threads'
import type { Kysely } from 'kysely'
import type { DB } from '../storage/schema.ts'
import { openSqlite, SQLITE_PRAGMAS, type SqliteConnection } from '../storage/sqlite.ts'
import { DECISION_COLUMNS, type DecisionRecord, type DecisionSink } from './record.ts'

/** Batches as one multi-row INSERT (one transaction, one WAL flush) through Kysely: PostgreSQL. */
export class KyselyDecisionSink implements DecisionSink {
  constructor(private readonly db: Kysely<DB>) {}

  async write(rows: readonly DecisionRecord[]): Promise<void> {
    await this.db.insertInto('decision').values([...rows]).execute()
  }

  async close(): Promise<void> {}
}

const values = (r: DecisionRecord): unknown[] => DECISION_COLUMNS.map((c) => r[c])

interface Here {
  readonly conn: SqliteConnection
  readonly insert: (rows: unknown[][]) => void
}

type Reply = { id: number; ok: true } | { id: number; ok: false; code: string }

const failed = (code: string) => Object.assign(new Error('decision write failed'), { code })

/**
 * SQLite batches committed on a dedicated worker thread with its own connection, so the
 * commit's fsync (synchronous=FULL) does not block the event loop serving requests. `writeNow`
 * commits on the calling thread through a second connection of its own (the writer uses it only
 * while a single request is in flight).
 */
export class SqliteWorkerDecisionSink implements DecisionSink {
  readonly #worker: Worker
  readonly #pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>()
  #next = 1
  #dead: Error | undefined
  #here: Here | undefined

  constructor(private readonly path: string) {
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
      else p.reject(failed(m.code))
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
    return this.#call({ type: 'write', rows: rows.map(values) })
  }

  writeNow(rows: readonly DecisionRecord[]): boolean {
    if (this.#dead) throw this.#dead
    this.#here ??= this.#open()
    try {
      this.#here.insert(rows.map(values))
      return true
    } catch (err) {
      const code = String((err as { code?: unknown }).code ?? 'SQLITE_ERROR')
      // Another connection is writing (the writer thread, a migration, the CLI): queue instead of waiting here.
      if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return false
      // Only the code: SQLite messages can quote values.
      throw failed(code)
    }
  }

  /** The calling thread's connection: never waits for a lock (busy_timeout 0), one prepared INSERT. */
  #open(): Here {
    const conn = openSqlite(this.path)
    conn.pragma('busy_timeout = 0')
    const stmt = conn.prepare(`insert into decision (${DECISION_COLUMNS.join(', ')}) values (${DECISION_COLUMNS.map(() => '?').join(', ')})`)
    return { conn, insert: conn.transaction((rows: unknown[][]) => { for (const r of rows) stmt.run(r) }) }
  }

  async close(): Promise<void> {
    this.#here?.conn.close()
    this.#here = undefined
    if (!this.#dead) await this.#call({ type: 'close' }).catch(() => undefined)
    await this.#worker.terminate()
  }
}
