import type { TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { sql } from 'kysely'
import { SESSION_COOKIE } from '../../src/api/guard.ts'
import type { Classifier } from '../../src/classify/facts.ts'
import type { Role } from '../../src/orgs/rbac.ts'
import { buildServer, type ServerDeps } from '../../src/server.ts'
import { orgWithKeys, startApp, type TestApp } from '../helpers/app.ts'

/**
 * An app for the policy API tests: the whole server (startApp) plus a second Fastify instance
 * over the same deps with a test classifier injected (the sandbox test needs one), driven with
 * inject(). People get sessions directly; state changes carry Origin and the CSRF token.
 */
export interface PolicyWorld {
  readonly tg: TestApp
  readonly app: FastifyInstance
  readonly orgId: string
  person(role: Role, opts?: { staleAuth?: boolean; orgId?: string }): Promise<Who>
  /** Another org on the same instance. */
  otherOrg(): Promise<string>
  call(who: Who | undefined, method: string, path: string, body?: unknown): Promise<{ status: number; json: any; text: string }>
  /** Policy audit entries of the org, oldest first. */
  audit(prefix?: string): Promise<{ action: string; target_id: string | null; actor_type: string; actor_id: string | null; outcome: string; request_id: string | null }[]>
  /** Every value of every table, as one string (SQLite). */
  dump(): Promise<string>
}

export interface Who {
  readonly userId: string
  cookie: string
  csrf: string
}

export async function policyWorld(t: TestContext, opts: { classifier?: Classifier | undefined; clock?: { now(): number } } = {}): Promise<PolicyWorld> {
  const tg = (await startApp(t, opts.clock ? { clock: opts.clock } : {}))!
  const deps: ServerDeps & { classifier?: Classifier } = { ...tg.deps, ...(opts.classifier ? { classifier: opts.classifier } : {}) }
  const app = await buildServer(deps)
  t.after(() => app.close())
  const { org } = await orgWithKeys(tg.deps)
  const db = tg.deps.db.db

  const call: PolicyWorld['call'] = async (who, method, path, body) => {
    const headers: Record<string, string> = { origin: tg.deps.origin }
    if (who) {
      headers['cookie'] = who.cookie
      headers['x-csrf-token'] = who.csrf
    }
    const res = await app.inject({ method: method as 'GET', url: path, headers, ...(body !== undefined ? { payload: body as object } : {}) })
    const set = ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith(`${SESSION_COOKIE}=`))
    if (who && set) who.cookie = set.split(';')[0]!
    let json: any
    try {
      json = res.body ? JSON.parse(res.body) : undefined
    } catch {
      json = undefined
    }
    return { status: res.statusCode, json, text: res.body }
  }

  return {
    tg, app, orgId: org.id, call,
    async person(role, o = {}) {
      const user = await tg.deps.users.create(db, `p-${Math.random().toString(36).slice(2)}@example.com`)
      await tg.deps.members.add(db, o.orgId ?? org.id, user.id, role)
      const authAt = o.staleAuth ? tg.deps.clock.now() - 24 * 3600_000 : undefined
      const { token } = await tg.deps.sessions.create(user.id, 'bootstrap', null, authAt)
      const who: Who = { userId: user.id, cookie: `${SESSION_COOKIE}=${token}`, csrf: '' }
      const me = await call(who, 'GET', '/api/me')
      who.csrf = me.json.csrf_token
      return who
    },
    async otherOrg() {
      return (await orgWithKeys(tg.deps)).org.id
    },
    async audit(prefix = '') {
      const rows = await db.selectFrom('audit_event').select(['action', 'target_id', 'actor_type', 'actor_id', 'outcome', 'request_id']).where('chain_id', '=', org.id).orderBy('seq').execute()
      return rows.filter((r) => r.action.startsWith(prefix))
    },
    async dump() {
      const tables = await sql<{ name: string }>`select name from sqlite_master where type = 'table'`.execute(db)
      const parts: string[] = []
      for (const { name } of tables.rows) parts.push(JSON.stringify((await sql.raw(`select * from "${name}"`).execute(db)).rows))
      return parts.join('\n')
    },
  }
}
