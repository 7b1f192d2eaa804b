// The decision writer thread: one SQLite connection, one prepared INSERT, one transaction per
// batch. Plain JavaScript so it loads the same way under every runner (worker threads do not
// inherit a TypeScript loader registered at run time).
import { parentPort, workerData } from 'node:worker_threads'
import SqliteDatabase from 'better-sqlite3-multiple-ciphers'

const { path, columns, pragmas } = workerData
const conn = new SqliteDatabase(path)
for (const p of pragmas) conn.pragma(p)
const insert = conn.prepare(`insert into decision (${columns.join(', ')}) values (${columns.map(() => '?').join(', ')})`)
const writeBatch = conn.transaction((rows) => {
  for (const r of rows) insert.run(r)
})

parentPort.on('message', (m) => {
  try {
    if (m.type === 'write') writeBatch(m.rows)
    else conn.close()
    parentPort.postMessage({ id: m.id, ok: true })
  } catch (err) {
    // Only the error code crosses back: SQLite messages can quote values.
    parentPort.postMessage({ id: m.id, ok: false, code: String(err?.code ?? 'SQLITE_ERROR') })
  }
})
