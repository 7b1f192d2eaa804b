import type { TrustInstance, LiveSetting } from './instance.ts'
import { PROMISES, type CheckId, type PromiseStatus } from './promises.ts'

export type CheckStatus = 'ok' | 'warn' | 'fail'

export interface CheckResult {
  readonly id: CheckId
  readonly status: CheckStatus
  /** What was found, in words that name no secret, path or driver error. */
  readonly detail: string
}

/** The live probes a self-check needs; each resolves, never throws, and reveals nothing but a yes/no. */
export interface TrustProbes {
  /** `select 1` on the database. */
  database(): Promise<boolean>
  cache(): Promise<boolean>
  /** Migrations this code knows of that the database has not applied (undefined: could not tell). */
  pendingMigrations(): Promise<readonly string[] | undefined>
  /** The master key opens this database's wrapped instance key. */
  masterKey(): Promise<boolean>
  /** The classifier's model has loaded. */
  classifier(): Promise<boolean>
}

export interface TrustReport {
  readonly instance: { readonly mode: string; readonly environments: readonly string[]; readonly storage: string; readonly cache: string }
  readonly checked_at: string
  /** The worst self-check result. */
  readonly status: CheckStatus
  readonly checks: readonly CheckResult[]
  readonly promises: readonly {
    readonly id: string
    readonly area: string
    readonly promise: string
    readonly status: PromiseStatus
    readonly missing?: string
    readonly settings: readonly LiveSetting[]
    /** The worst result of the self-checks this promise depends on; `none` when it has none. */
    readonly self_check: CheckStatus | 'none'
    readonly checks: readonly CheckId[]
  }[]
}

const DAY_MS = 86_400_000
/** RFC 9116 §2.5.5 recommends an Expires less than a year ahead; warn this long before it passes. */
export const SECURITY_TXT_WARN_DAYS = 30

const worst = (list: readonly CheckStatus[]): CheckStatus => (list.includes('fail') ? 'fail' : list.includes('warn') ? 'warn' : 'ok')

/** The security.txt self-check: no contact, expired, expiring within 30 days, or more than a year ahead. Pure. */
export function securityTxtCheck(sec: TrustInstance['security'], now: number): CheckResult {
  if (sec.contacts.length === 0 || sec.expiresAt === undefined) {
    return { id: 'security_txt', status: 'warn', detail: 'no security contact: /.well-known/security.txt answers 404 — set TOLLGATE_SECURITY_CONTACT and TOLLGATE_SECURITY_EXPIRES' }
  }
  const date = new Date(sec.expiresAt).toISOString()
  if (sec.expiresAt <= now) return { id: 'security_txt', status: 'fail', detail: `security.txt expired on ${date}: review it and move TOLLGATE_SECURITY_EXPIRES forward` }
  const days = Math.floor((sec.expiresAt - now) / DAY_MS)
  if (sec.expiresAt - now <= SECURITY_TXT_WARN_DAYS * DAY_MS) {
    return { id: 'security_txt', status: 'warn', detail: `security.txt expires on ${date}, in ${days} day(s): review it and move TOLLGATE_SECURITY_EXPIRES forward` }
  }
  if (sec.expiresAt - now > 366 * DAY_MS) return { id: 'security_txt', status: 'warn', detail: `security.txt expires on ${date}, more than a year ahead (RFC 9116 recommends less)` }
  return { id: 'security_txt', status: 'ok', detail: `security.txt is served and expires on ${date}` }
}

/** Runs every self-check (the /readyz probes plus migrations, master key, transport and security.txt). */
export async function runChecks(i: TrustInstance, probes: TrustProbes, now: number): Promise<CheckResult[]> {
  const [database, cache, pending, masterKey, classifier] = await Promise.all([
    probes.database().catch(() => false),
    probes.cache().catch(() => false),
    probes.pendingMigrations().catch(() => undefined),
    probes.masterKey().catch(() => false),
    probes.classifier().catch(() => false),
  ])
  const out: CheckResult[] = [
    { id: 'database', status: database ? 'ok' : 'fail', detail: database ? `${i.storage === 'sqlite' ? 'SQLite' : 'PostgreSQL'} database reachable` : 'database unreachable' },
    { id: 'cache', status: cache ? 'ok' : 'fail', detail: cache ? `${i.cache} cache reachable` : `${i.cache} cache unreachable` },
    pending === undefined
      ? { id: 'migrations', status: 'fail', detail: 'could not read the schema version' }
      : pending.length === 0
        ? { id: 'migrations', status: 'ok', detail: 'schema up to date' }
        : { id: 'migrations', status: 'fail', detail: `${pending.length} migration(s) not applied: run tollgate migrate` },
    masterKey
      ? { id: 'master_key', status: 'ok', detail: i.masterKey === 'setting' ? 'master key set (TOLLGATE_MASTER_KEY) and opens this database’s keys' : 'development master key (file in the data dir) opens this database’s keys' }
      : { id: 'master_key', status: 'fail', detail: 'the master key does not open this database’s keys' },
    { id: 'classifier', status: classifier ? 'ok' : 'warn', detail: classifier ? 'classifier model loaded' : 'classifier model still loading' },
    i.transport.tls
      ? { id: 'transport', status: 'ok', detail: 'TLS terminated by Tollgate (1.2 minimum), HSTS sent' }
      : i.transport.publicHttps
        ? { id: 'transport', status: 'ok', detail: 'served behind an https public URL: HSTS sent' }
        : { id: 'transport', status: 'warn', detail: 'plain HTTP: no TLS here and no https public URL (set TOLLGATE_TLS_CERT/KEY, or TOLLGATE_PUBLIC_URL=https://… behind a TLS proxy)' },
    securityTxtCheck(i.security, now),
  ]
  return out
}

/** The trust report: every promise with its live settings and self-check, and the checks themselves. */
export async function trustReport(i: TrustInstance, probes: TrustProbes, now: number): Promise<TrustReport> {
  const checks = await runChecks(i, probes, now)
  const byId = new Map(checks.map((c) => [c.id, c.status]))
  return {
    instance: { mode: i.mode, environments: i.environments, storage: i.storage, cache: i.cache },
    checked_at: new Date(now).toISOString(),
    status: worst(checks.map((c) => c.status)),
    checks,
    promises: PROMISES.map((p) => ({
      id: p.id,
      area: p.area,
      promise: p.text,
      status: p.status,
      ...(p.missing ? { missing: p.missing } : {}),
      settings: p.settings(i),
      self_check: p.checks.length === 0 ? 'none' : worst(p.checks.map((c) => byId.get(c) ?? 'fail')),
      checks: p.checks,
    })),
  }
}
