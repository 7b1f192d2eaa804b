import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import net from 'node:net'
import type { TestContext } from 'node:test'
import pg from 'pg'

/** Under CI a missing service is a failure, never a skip. */
export const IN_CI = process.env['CI'] === 'true'

export const POSTGRES_ADMIN_URL = process.env['TOLLGATE_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres'
export const REDIS_URL = process.env['TOLLGATE_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379'
export const CHROMIUM = process.env['TOLLGATE_TEST_CHROMIUM'] ?? '/usr/bin/chromium'

export function reachable(url: string, timeoutMs = 1000): Promise<boolean> {
  const u = new URL(url)
  return new Promise((resolve) => {
    const s = net.connect({ host: u.hostname, port: Number(u.port) })
    const done = (ok: boolean) => {
      s.destroy()
      resolve(ok)
    }
    s.setTimeout(timeoutMs, () => done(false))
    s.once('connect', () => done(true))
    s.once('error', () => done(false))
  })
}

export type Service = 'postgres' | 'redis' | 'chromium'

/**
 * True when the service is there. Otherwise: under CI=true the test fails; on a laptop it is
 * skipped with the reason printed.
 */
export async function needService(t: TestContext, service: Service): Promise<boolean> {
  const ok = service === 'postgres' ? await reachable(POSTGRES_ADMIN_URL)
    : service === 'redis' ? await reachable(REDIS_URL)
    : existsSync(CHROMIUM)
  if (ok) return true
  const reason = service === 'chromium' ? `${service} not found at ${CHROMIUM}` : `${service} is not reachable at ${service === 'postgres' ? '127.0.0.1:5432' : '127.0.0.1:6379'}`
  if (IN_CI) assert.fail(`${reason} — CI=true requires it (.ci/run starts it)`)
  t.skip(`${reason}; start it to run this test`)
  return false
}

/** A fresh, empty PostgreSQL database for one test; dropped afterwards. */
export async function freshPostgres(t: TestContext): Promise<string> {
  const name = `tollgate_t_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL })
  await admin.connect()
  await admin.query(`create database ${name}`)
  await admin.end()
  t.after(async () => {
    const c = new pg.Client({ connectionString: POSTGRES_ADMIN_URL })
    await c.connect()
    await c.query(`drop database if exists ${name} with (force)`)
    await c.end()
  })
  const u = new URL(POSTGRES_ADMIN_URL)
  u.pathname = `/${name}`
  return u.toString()
}
