/**
 * Where Tollgate's time goes at one connection: its own `Server-Timing` header (auth, upstream,
 * record, total) over sequential requests, next to the client-side latency of Tollgate and of
 * the bare proxy in the same loop, and the durability floor of this disk (one SQLite commit with
 * Tollgate's pragmas: WAL + synchronous=FULL), which every answer waits for (D8).
 */
import http from 'node:http'
import { join } from 'node:path'
import SqliteDatabase from 'better-sqlite3-multiple-ciphers'
import { SQLITE_PRAGMAS } from '../../src/storage/sqlite.ts'
import { body, PATHS, type Api } from './bodies.ts'
import { quantile, timedPost, type Target } from './probe.ts'

export interface TimingBreakdown {
  readonly api: Api
  readonly requests: number
  /** Client-side latency, ms (p50/p99), per target in the loop. */
  readonly client: Record<string, { p50: number; p99: number }>
  /** Tollgate's Server-Timing steps, ms (p50/p99). */
  readonly steps: Record<string, { p50: number; p99: number }>
}

export async function serverTimingProbe(targets: readonly Target[], api: Api, n: number): Promise<TimingBreakdown> {
  const payload = body(api, 'json')
  const agents = new Map(targets.map((t) => [t.name, new http.Agent({ keepAlive: true, maxSockets: 1 })]))
  const client = new Map<string, number[]>(targets.map((t) => [t.name, []]))
  const steps = new Map<string, number[]>()
  try {
    for (let i = 0; i < n; i++) {
      for (const t of targets) {
        const r = await timedPost(t.base + PATHS[api], t.headers[api], payload, agents.get(t.name)!)
        if (r.status !== 200) throw new Error(`${t.name}: timing probe got HTTP ${r.status}`)
        if (i < 10) continue // warm the connection and the JIT
        client.get(t.name)!.push(r.totalMs)
        const st = r.headers['server-timing']
        if (t.name !== 'tollgate' || typeof st !== 'string') continue
        for (const part of st.split(',')) {
          const m = /^\s*([\w-]+);dur=([\d.]+)/.exec(part)
          if (!m) continue
          if (!steps.has(m[1]!)) steps.set(m[1]!, [])
          steps.get(m[1]!)!.push(Number(m[2]))
        }
      }
    }
  } finally {
    for (const a of agents.values()) a.destroy()
  }
  const q = (xs: number[]) => ({ p50: quantile(xs, 0.5), p99: quantile(xs, 0.99) })
  return {
    api, requests: Math.max(0, n - 10),
    client: Object.fromEntries([...client].map(([k, v]) => [k, q(v)])),
    steps: Object.fromEntries([...steps].map(([k, v]) => [k, q(v)])),
  }
}

/** p50/p99 of one single-row commit with Tollgate's SQLite pragmas, in `dir` (the data dir's disk). */
export function sqliteCommitFloor(dir: string, n = 200): { p50Ms: number; p99Ms: number } {
  const db = new SqliteDatabase(join(dir, 'commit-floor.db'))
  try {
    for (const p of SQLITE_PRAGMAS) db.pragma(p)
    db.exec('create table if not exists t (id integer primary key, v text)')
    const insert = db.prepare('insert into t (v) values (?)')
    const times: number[] = []
    for (let i = 0; i < n; i++) {
      const t0 = performance.now()
      insert.run(`row ${i}`)
      times.push(performance.now() - t0)
    }
    return { p50Ms: quantile(times, 0.5), p99Ms: quantile(times, 0.99) }
  } finally {
    db.close()
  }
}
