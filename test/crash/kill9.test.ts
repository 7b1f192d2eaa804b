// T10: kill -9 under load, with no lost acknowledged decisions — on SQLite (one instance) and on
// PostgreSQL + Redis (two instances, a random one killed each time).
//
// Tollgate runs as real `serve` child processes (scripts/lib/instances.ts). Closed-loop clients
// (8; one of them impatient: it gives up after 20–400 ms, like a client timeout) send intercept calls, each with a unique Idempotency-Key and a unique prompt, and keep a
// history: ok (2xx with its x-tollgate-decision), fail (refused, or a definite error status) or
// info (reset / timeout: unknown). An admin client creates policy drafts through the admin API
// (audited writes in the same process) and a CLI loop creates keys (`tollgate keys create`,
// audited; half of those processes are SIGKILLed mid-way too). A seeded nemesis SIGKILLs an
// instance every 2–6 s (kill to kill; ≥ 20 cycles, 100 with TOLLGATE_TEST_LEVEL=full), sometimes
// timed to land while an admin write is in flight; the harness restarts it on the same data with
// nothing but `serve`. After quiescence every info operation is retried with its key, the
// instances are stopped gracefully, and the checker reads the database.
//
// TOLLGATE_TEST_SEED replays a schedule; TOLLGATE_T10_CYCLES overrides the cycle count.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import type http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import SqliteDatabase from 'better-sqlite3-multiple-ciphers'
import { sql, type Kysely } from 'kysely'
import { cli, instanceEnv, startCli, type InstanceSpec } from '../../scripts/lib/instances.ts'
import { verifyChains } from '../../src/audit/audit.ts'
import { buildStores } from '../../src/deps.ts'
import type { PolicyDB } from '../../src/policy/policies.repo.ts'
import { openDatabase } from '../../src/storage/database.ts'
import { openSqlite, SQLITE_PRAGMAS } from '../../src/storage/sqlite.ts'
import { startMockUpstream, UPSTREAM_KEYS, type MockUpstream } from '../fakes/upstreams.ts'
import { freePort, TEST_MASTER_KEY, testConfig } from '../helpers/app.ts'
import { freshPostgres, needService, REDIS_URL } from '../helpers/services.ts'
import { classify, Cluster, counts, post, prng, resolveInfo, sleep, type HttpResult, type Op, type Slot } from './harness.ts'

const FULL = process.env['TOLLGATE_TEST_LEVEL'] === 'full'
const CYCLES = Number(process.env['TOLLGATE_T10_CYCLES'] ?? (FULL ? 100 : 20))
const SEED = process.env['TOLLGATE_TEST_SEED'] ? Number(process.env['TOLLGATE_TEST_SEED']) : Math.floor(Math.random() * 2 ** 31)
/** Kill to kill, seeded uniform. */
const GAP_MS = [2000, 6000] as const
/**
 * A restarted instance has answered requests for at least this long before it is killed again (a
 * restart — node, the TypeScript loader, the classifier model — takes a few seconds on 2 cores,
 * so on one instance a cycle is restart + ≥ 1 s of service when that exceeds the drawn gap).
 */
const MIN_UP_MS = 1000
const CLIENTS = 8
/**
 * Per backend: the nemesis stops here even if it has not done all its cycles (then the test fails).
 * A bound on a stuck run, not a speed target: on one instance every cycle also waits for the
 * restart, which under the load of a CI run (npm ci just done, other test files on the second
 * core) has taken up to ~15 s — so each cycle is allowed its longest gap plus 15 s.
 */
const RESTART_ALLOWANCE_MS = 15_000
const BUDGET_MS = Number(process.env['TOLLGATE_T10_BUDGET_S'] ?? 0) * 1000 || CYCLES * (GAP_MS[1] + RESTART_ALLOWANCE_MS) + 60_000
const MODEL = 'gpt-4o-mini'
const kept = (status: number) => status < 400 || status === 403

const aiId = (_s: number, h: http.IncomingHttpHeaders) => (typeof h['x-tollgate-decision'] === 'string' ? h['x-tollgate-decision'] : undefined)
const adminId = (_s: number, _h: http.IncomingHttpHeaders, body: string) => {
  try {
    const id = (JSON.parse(body) as { id?: unknown }).id
    return typeof id === 'string' ? id : undefined
  } catch {
    return undefined
  }
}

type Backend = 'sqlite' | 'postgres'

interface World {
  readonly backend: Backend
  readonly cluster: Cluster
  /** Settings every Tollgate process (server or CLI) of this world gets. */
  readonly settings: Record<string, string>
  readonly dataDir: string
  readonly databaseUrl: string | undefined
  readonly orgId: string
  readonly gatewayKey: string
  readonly adminKey: string
  readonly mock: MockUpstream
}

async function crashWorld(t: TestContext, backend: Backend): Promise<World | undefined> {
  if (backend === 'postgres' && (!(await needService(t, 'postgres')) || !(await needService(t, 'redis')))) return undefined
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-t10-'))
  t.after(() => rmSync(dataDir, { recursive: true, force: true }))
  const databaseUrl = backend === 'postgres' ? await freshPostgres(t) : undefined
  const settings: Record<string, string> = {
    TOLLGATE_DATA_DIR: dataDir,
    TOLLGATE_MASTER_KEY: TEST_MASTER_KEY,
    TOLLGATE_LOG_LEVEL: 'warn',
    TOLLGATE_LIMIT_AUTH_PER_MIN: '1000000', TOLLGATE_LIMIT_INTERCEPT_PER_MIN: '1000000', TOLLGATE_LIMIT_API_PER_MIN: '1000000',
    // A claim whose instance died is taken over after 2 s (the retries after quiescence need that).
    TOLLGATE_IDEMPOTENCY_LOCK_S: '2',
    // Only the OpenAI-compatible upstream, at the local mock; no LLM classifier calls.
    OPENAI_API_KEY: UPSTREAM_KEYS.openai, OPENAI_BASE_URL: `${mock.url}/v1`,
    TOLLGATE_CLASSIFIER_LLM: 'off',
    ...(databaseUrl ? { TOLLGATE_DATABASE_URL: databaseUrl, TOLLGATE_REDIS_URL: REDIS_URL } : {}),
  }
  const env = instanceEnv(settings)
  // The org and its gateway key as the operator makes them (the CLI); the admin member and its
  // admin key in-process (the CLI has no command for admin keys).
  const org = JSON.parse((await cli(['org', 'create', 't10', '--json'], env)).trim().split('\n').pop()!) as { id: string }
  const gw = JSON.parse((await cli(['keys', 'create', '--org', 't10', '--env', 'production', '--label', 't10-gateway', '--json'], env)).trim().split('\n').pop()!) as { key: string }
  const stores = await buildStores(testConfig(settings))
  let adminKey: string
  try {
    const user = await stores.users.create(stores.db.db, 't10-admin@example.com')
    await stores.members.add(stores.db.db, org.id, user.id, 'ADMIN')
    adminKey = (await stores.keys.create({ orgId: org.id, environment: 'production', userId: user.id, scope: 'admin', label: 't10-admin', actor: { type: 'operator', id: null } })).key
  } finally {
    await stores.close()
  }

  const names = backend === 'sqlite' ? ['A'] : ['A', 'B']
  const specs: InstanceSpec[] = []
  for (const name of names) {
    const port = await freePort()
    specs.push({ name, env: instanceEnv({ ...settings, TOLLGATE_HOST: '127.0.0.1', TOLLGATE_PORT: String(port) }), stdout: { file: join(dataDir, `${name}.log`) }, readyTimeoutMs: 90_000 })
  }
  const cluster = new Cluster(specs)
  t.after(() => cluster.killAll())
  return { backend, cluster, settings, dataDir, databaseUrl, orgId: org.id, gatewayKey: gw.key, adminKey, mock }
}

interface CycleLog {
  readonly victim: string
  readonly aiInFlight: number
  readonly adminInFlight: number
  readonly aimedAtAdmin: boolean
}

interface CliOp {
  readonly label: string
  outcome: 'ok' | 'fail' | 'info'
  id?: string
}

async function t10(t: TestContext, backend: Backend): Promise<void> {
  const w = await crashWorld(t, backend)
  if (!w) return
  const { cluster } = w
  const seed = SEED + (backend === 'postgres' ? 1 : 0)
  const nemesisRand = prng(seed)
  const cliRand = prng(seed ^ 0x5f3759df)
  t.diagnostic(`T10 [${backend}] seed ${seed} (TOLLGATE_TEST_SEED=${SEED}), ${CYCLES} cycles, ${cluster.slots.length} instance(s)`)

  const t0 = performance.now()
  await Promise.all(cluster.slots.map((s) => cluster.start(s)))
  const deadline = t0 + BUDGET_MS

  // ---------------------------------------------------------------- the clients
  const ai: Op[] = []
  const admin: Op[] = []
  const cliOps: CliOp[] = []
  let stopped = false
  const aiSend = (slot: Slot, op: Op, timeoutMs?: number): Promise<HttpResult> =>
    post(cluster.url(slot), '/v1/intercept', { authorization: `Bearer ${w.gatewayKey}`, 'idempotency-key': op.key }, op.body, slot.agent, timeoutMs)
  const adminPath = `/api/orgs/${w.orgId}/policies`
  const adminSend = (slot: Slot, op: Op): Promise<HttpResult> =>
    post(cluster.url(slot), adminPath, { authorization: `Bearer ${w.adminKey}`, 'idempotency-key': op.key }, op.body, slot.agent)

  /** `impatient`: gives up after 20–400 ms (a client timeout: the server sees the client go away mid-request). */
  const loop = async (ops: Op[], kind: 'ai' | 'admin', pauseMs: number, impatient = false) => {
    while (!stopped) {
      const slot = cluster.pick(Math.random)
      if (!slot) {
        await cluster.waitUp(500)
        continue
      }
      const n = ops.length
      const key = `t10-${backend}-${seed}-${kind}-${n}`
      const body = kind === 'ai'
        ? JSON.stringify({ model: MODEL, prompt: `T10 operation ${key}: say hello.`, max_tokens: 16 })
        : JSON.stringify({ document: { version: 1, default_action: 'allow', rules: [{ id: `op-${n}`, when: {}, action: 'allow', reason: 'crash_test' }] } })
      const op: Op = { n, key, body, slot: slot.name, outcome: 'info', status: undefined, id: undefined, requestId: undefined, replayed: false, reason: undefined }
      ops.push(op)
      slot.inflight[kind]++
      const r = await (kind === 'ai' ? aiSend(slot, op, impatient ? 20 + Math.random() * 380 : undefined) : adminSend(slot, op))
      slot.inflight[kind]--
      classify(op, r, kind === 'ai' ? aiId : adminId)
      // The nemesis counts an instance as serving once an AI call went all the way through it (classifier warm).
      if (op.outcome === 'ok' && kind === 'ai') cluster.served(slot)
      if (r.kind === 'refused') await sleep(25)
      else if (pauseMs > 0) await sleep(pauseMs)
    }
  }
  const cliLoop = async () => {
    const env = instanceEnv(w.settings)
    while (!stopped) {
      await sleep(500 + cliRand() * 1500)
      if (stopped) break
      const op: CliOp = { label: `t10-cli-${cliOps.length}`, outcome: 'info' }
      cliOps.push(op)
      const run = startCli(['keys', 'create', '--org', 't10', '--env', 'sandbox', '--label', op.label, '--json'], env, 60_000)
      const killAt = cliRand() < 0.5 ? 300 + cliRand() * 2500 : undefined
      const timer = killAt === undefined ? undefined : setTimeout(() => run.kill(), killAt)
      const r = await run.done
      clearTimeout(timer)
      if (r.code === 0) {
        op.outcome = 'ok'
        op.id = (JSON.parse(r.stdout.trim().split('\n').pop()!) as { id: string }).id
      } else op.outcome = r.signal === 'SIGKILL' ? 'info' : 'fail'
    }
  }
  const clients = [
    ...Array.from({ length: CLIENTS }, (_, i) => loop(ai, 'ai', 0, i === 0)),
    loop(admin, 'admin', 100),
    cliLoop(),
  ]

  // ---------------------------------------------------------------- the nemesis
  const cycles: CycleLog[] = []
  const restarts: Promise<void>[] = []
  const restartFailures: string[] = []
  let lastKill = performance.now()
  try {
    while (cycles.length < CYCLES && performance.now() < deadline) {
      const gap = GAP_MS[0] + nemesisRand() * (GAP_MS[1] - GAP_MS[0])
      const victim = cluster.slots[Math.floor(nemesisRand() * cluster.slots.length)]!
      const aimAtAdmin = nemesisRand() < 0.3
      while (performance.now() < deadline && (performance.now() < lastKill + gap || !victim.up || victim.servingSince === 0 || performance.now() < victim.servingSince + MIN_UP_MS)) await sleep(20)
      if (performance.now() >= deadline) break
      // A third of the kills wait (≤ 2 s) for an admin write in flight on the victim.
      for (let i = 0; aimAtAdmin && victim.inflight.admin === 0 && i < 200; i++) await sleep(10)
      cycles.push({ victim: victim.name, aiInFlight: victim.inflight.ai, adminInFlight: victim.inflight.admin, aimedAtAdmin: aimAtAdmin })
      await cluster.kill(victim)
      lastKill = performance.now()
      // Restart on the same data dir / database: `serve` again, nothing else.
      const restart = cluster.start(victim).catch((err: unknown) => {
        restartFailures.push(`${victim.name}: ${(err as Error).message}`)
      })
      restarts.push(restart)
      // With one instance the next cycle waits for this restart anyway; with two, the other serves meanwhile.
      if (restartFailures.length > 0) break
    }
  } finally {
    await Promise.all(restarts)
    stopped = true
    await Promise.all(clients)
  }
  const loadMs = performance.now() - t0
  assert.deepEqual(restartFailures, [], 'every restart after a kill -9 came up with `serve` alone (no manual step)')
  assert.equal(cycles.length, CYCLES, `${CYCLES} kill -9 cycles within the ${Math.round(BUDGET_MS / 1000)} s budget`)

  // ---------------------------------------------------------------- quiescence: resolve the unknowns
  const resolveDeadline = performance.now() + 90_000
  const aiUnresolved = await resolveInfo(cluster, ai, aiSend, aiId, Math.random, resolveDeadline)
  const adminUnresolved = await resolveInfo(cluster, admin, adminSend, adminId, Math.random, resolveDeadline)
  const exits = await cluster.stopAll()

  // ---------------------------------------------------------------- the checker
  const db = openDatabase({ url: w.databaseUrl, dataDir: w.dataDir })
  try {
    const decisions = await db.db.selectFrom('decision').select(['id', 'prompt_fingerprint', 'status', 'outcome']).where('org_id', '=', w.orgId).execute()
    const byId = new Map(decisions.map((d) => [d.id, d]))
    const keptPerPrompt = new Map<string, number>()
    for (const d of decisions) if (kept(d.status) && d.prompt_fingerprint) keptPerPrompt.set(d.prompt_fingerprint, (keptPerPrompt.get(d.prompt_fingerprint) ?? 0) + 1)

    const aiOk = ai.filter((o) => o.outcome === 'ok')
    const aiInfo = ai.filter((o) => o.outcome === 'info')
    const lost = aiOk.filter((o) => !byId.has(o.id!))
    const notAllowed = aiOk.filter((o) => byId.get(o.id!) && (byId.get(o.id!)!.status !== 200 || byId.get(o.id!)!.outcome !== 'allowed'))
    const resolvedLost = aiInfo.filter((o) => o.resolved && !byId.has(o.resolved.id))
    const duplicatePrompts = [...keptPerPrompt.values()].filter((n) => n > 1).length
    const duplicateOps = [...aiOk.map((o) => o.id!), ...aiInfo.flatMap((o) => (o.resolved ? [o.resolved.id] : []))]
      .filter((id) => (keptPerPrompt.get(byId.get(id)?.prompt_fingerprint ?? '') ?? 0) !== 1).length
    const replayedAfterCrash = aiInfo.filter((o) => o.resolved?.replayed).length
    // A 2xx on the first try is never a replay (every key is new).
    const okReplays = aiOk.filter((o) => o.replayed).length

    // Admin writes: each acknowledged policy exists with its audit entry; one policy per key.
    const policies = await (db.db as unknown as Kysely<PolicyDB>).selectFrom('policy').select(['id', 'document']).where('org_id', '=', w.orgId).execute()
    const policyIds = new Set(policies.map((p) => p.id))
    const perRule = new Map<string, number>()
    for (const p of policies) {
      const rule = (JSON.parse(p.document) as { rules: { id: string }[] }).rules[0]?.id ?? ''
      perRule.set(rule, (perRule.get(rule) ?? 0) + 1)
    }
    const audit = await db.db.selectFrom('audit_event').select(['action', 'target_id', 'request_id']).where('chain_id', '=', w.orgId).execute()
    const auditedTargets = new Map<string, number>()
    for (const a of audit) if (a.action === 'policy_created' || a.action === 'authn_token_created') auditedTargets.set(`${a.action}:${a.target_id}`, (auditedTargets.get(`${a.action}:${a.target_id}`) ?? 0) + 1)
    const adminOk = admin.filter((o) => o.outcome === 'ok')
    const adminInfo = admin.filter((o) => o.outcome === 'info')
    const adminLost = [...adminOk.map((o) => o.id!), ...adminInfo.flatMap((o) => (o.resolved ? [o.resolved.id] : []))].filter((id) => !policyIds.has(id))
    const adminDuplicates = [...perRule.values()].filter((n) => n > 1).length
    const policiesWithoutAudit = policies.filter((p) => auditedTargets.get(`policy_created:${p.id}`) !== 1).length
    const adminAckWithoutAuditRequest = adminOk.filter((o) => !o.replayed && !audit.some((a) => a.action === 'policy_created' && a.target_id === o.id && a.request_id === o.requestId)).length

    // CLI key creations: every acknowledged key exists; every key has exactly one audit entry (effect and audit together or neither).
    const keys = await db.db.selectFrom('api_key').select(['id', 'label']).where('org_id', '=', w.orgId).where('label', 'like', 't10-cli-%').execute()
    const keyIds = new Set(keys.map((k) => k.id))
    const cliLost = cliOps.filter((o) => o.outcome === 'ok' && !keyIds.has(o.id!)).length
    const keysWithoutAudit = keys.filter((k) => auditedTargets.get(`authn_token_created:${k.id}`) !== 1).length
    const duplicateLabels = keys.length - new Set(keys.map((k) => k.label)).size

    const chains = await verifyChains(db.db)

    // Storage: integrity and the durability settings, read back.
    let storage: string
    if (backend === 'sqlite') {
      const path = join(w.dataDir, 'tollgate.db')
      const raw = new SqliteDatabase(path, { readonly: true })
      const integrity = raw.pragma('integrity_check', { simple: true })
      const persistedMode = raw.pragma('journal_mode', { simple: true })
      raw.close()
      // Tollgate's own connection settings (the main handle and the decision writer thread both use SQLITE_PRAGMAS).
      const conn = openSqlite(path)
      const mode = conn.pragma('journal_mode', { simple: true })
      const synchronous = conn.pragma('synchronous', { simple: true })
      conn.close()
      assert.equal(integrity, 'ok', 'PRAGMA integrity_check')
      assert.equal(persistedMode, 'wal', 'the database file is in WAL mode')
      assert.equal(mode, 'wal')
      assert.equal(synchronous, 2, 'synchronous=FULL (2) on Tollgate connections')
      assert.ok(SQLITE_PRAGMAS.includes('synchronous = FULL'), 'the decision writer thread opens with synchronous = FULL too')
      storage = `integrity_check=${integrity} journal_mode=${mode} synchronous=${synchronous}`
    } else {
      const show = async (name: string) => (await sql<{ v: string }>`select current_setting(${name}) as v`.execute(db.db)).rows[0]!.v
      const fsync = await show('fsync')
      const syncCommit = await show('synchronous_commit')
      const fpw = await show('full_page_writes')
      assert.equal(fsync, 'on')
      assert.equal(syncCommit, 'on')
      assert.equal(fpw, 'on')
      // amcheck: every B-tree index of the schema verifies.
      let indexes = 0
      let amcheck = 'unavailable'
      const available = (await sql<{ n: number }>`select count(*)::int as n from pg_available_extensions where name = 'amcheck'`.execute(db.db)).rows[0]!.n
      if (available > 0) {
        await sql`create extension if not exists amcheck`.execute(db.db)
        const idx = await sql<{ oid: number; name: string }>`select c.oid::int as oid, c.relname as name from pg_index i join pg_class c on c.oid = i.indexrelid
          join pg_am am on am.oid = c.relam join pg_namespace n on n.oid = c.relnamespace where am.amname = 'btree' and n.nspname = 'public'`.execute(db.db)
        for (const r of idx.rows) {
          await sql`select bt_index_check(${r.oid}::regclass, true)`.execute(db.db)
          indexes++
        }
        amcheck = `ok (${indexes} B-tree indexes)`
      } else if (process.env['CI'] === 'true') assert.fail('amcheck is not available')
      storage = `fsync=${fsync} synchronous_commit=${syncCommit} full_page_writes=${fpw} amcheck=${amcheck}`
    }

    const c = counts(ai)
    const ac = counts(admin)
    const startMs = cluster.slots.flatMap((s) => s.startMs.slice(1)).sort((a, b) => a - b)
    // How often each operation reached the provider (a retry after a crash before the commit may legitimately call it again).
    const providerCalls = new Map<string, number>()
    for (const r of w.mock.received) {
      const m = new RegExp(`t10-${backend}-${seed}-ai-\\d+`).exec(JSON.stringify(r.body))
      if (m) providerCalls.set(m[0], (providerCalls.get(m[0]) ?? 0) + 1)
    }
    const calledTwice = [...providerCalls.values()].filter((n) => n > 1).length
    t.diagnostic(`T10 [${backend}] ${cycles.length} kill -9 cycles in ${Math.round(loadMs / 1000)} s (victims ${cluster.slots.map((s) => `${s.name}×${cycles.filter((x) => x.victim === s.name).length}`).join(' ')}); ` +
      `AI requests in flight at the kills: ${cycles.reduce((n, x) => n + x.aiInFlight, 0)}; kills during an admin write: ${cycles.filter((x) => x.adminInFlight > 0).length}`)
    t.diagnostic(`T10 [${backend}] intercept: ${c.total} operations — ok ${c.ok}, failed ${c.fail} (refused ${c.refused}, error status ${c.fail - c.refused}), indeterminate ${c.info} ` +
      `(${ai.filter((o) => o.reason === 'timeout').length} client timeouts) → retried: ${c.info - aiUnresolved.length} resolved (${replayedAfterCrash} replayed the committed decision, ${c.info - aiUnresolved.length - replayedAfterCrash} executed once), ${aiUnresolved.length} unresolved; ` +
      `lost acknowledged decisions ${lost.length + resolvedLost.length}, duplicates ${duplicateOps} (prompts with > 1 kept decision: ${duplicatePrompts}); ${decisions.length} decision records`)
    t.diagnostic(`T10 [${backend}] admin (policy drafts, audited): ok ${ac.ok}, failed ${ac.fail}, indeterminate ${ac.info} (${ac.info - adminUnresolved.length} resolved); lost ${adminLost.length}, duplicates ${adminDuplicates}, policies without exactly one audit entry ${policiesWithoutAudit}; ` +
      `CLI key creations: ok ${cliOps.filter((o) => o.outcome === 'ok').length}, killed ${cliOps.filter((o) => o.outcome === 'info').length}, failed ${cliOps.filter((o) => o.outcome === 'fail').length}; lost ${cliLost}, keys without exactly one audit entry ${keysWithoutAudit}`)
    t.diagnostic(`T10 [${backend}] ${storage}; audit chains ${chains.length} (${chains.reduce((n, r) => n + r.entries, 0)} entries) ${chains.every((r) => !r.broken) ? 'verify' : 'BROKEN'}; ` +
      `restart to listening: median ${Math.round(startMs[startMs.length >> 1] ?? 0)} ms, max ${Math.round(startMs.at(-1) ?? 0)} ms; graceful stop exits ${exits.map((e) => `${e.name}=${e.code ?? e.signal}`).join(' ')}`)
    t.diagnostic(`T10 [${backend}] provider calls ${w.mock.received.length}; operations that reached the provider more than once (crashed before their decision was committed, then retried): ${calledTwice}`)

    const history = (o: Op) => `${o.key}: ${o.outcome}${o.reason ? ` (${o.reason})` : ''} on ${o.slot}${o.id ? ` id ${o.id}` : ''}${o.resolved ? ` → retried ×${o.resolved.attempts} on ${o.resolved.slot}: ${o.resolved.replayed ? 'replayed' : 'executed'} ${o.resolved.id}` : ''}`
    for (const [rule, n] of perRule) if (n > 1) t.diagnostic(`T10 [${backend}] DUPLICATE admin write ×${n}: ${admin[Number(rule.slice(3))] ? history(admin[Number(rule.slice(3))]!) : rule}`)
    for (const o of [...aiOk, ...aiInfo]) {
      const id = o.resolved?.id ?? o.id
      if (id && (keptPerPrompt.get(byId.get(id)?.prompt_fingerprint ?? '') ?? 0) > 1) t.diagnostic(`T10 [${backend}] DUPLICATE decision: ${history(o)}`)
    }

    assert.deepEqual(aiUnresolved.map((o) => o.key), [], 'every indeterminate intercept call resolves with its key after quiescence')
    assert.deepEqual(lost.map((o) => o.id), [], 'AUDIT-2 TRANSIT-3: no acknowledged decision is lost')
    assert.deepEqual(resolvedLost.map((o) => o.resolved!.id), [], 'a decision returned on retry exists')
    assert.deepEqual(notAllowed.map((o) => o.id), [], 'each acknowledged decision is recorded as allowed/200')
    assert.equal(okReplays, 0, 'a first try is never a replay')
    assert.equal(duplicatePrompts, 0, 'LIMIT-2: 0 duplicates — at most one kept decision per idempotency key')
    assert.equal(duplicateOps, 0, 'every acknowledged or resolved operation maps to exactly one decision')
    assert.deepEqual(adminUnresolved.map((o) => o.key), [], 'every indeterminate admin write resolves with its key')
    assert.deepEqual(adminLost, [], 'AUDIT-1: no acknowledged admin write is lost')
    assert.equal(adminAckWithoutAuditRequest, 0, 'each acknowledged admin write has its audit entry with its request id')
    assert.equal(policiesWithoutAudit, 0, 'each stored policy has exactly one audit entry')
    assert.equal(cliLost, 0, 'no acknowledged CLI key creation is lost')
    assert.equal(keysWithoutAudit, 0, 'each created key has exactly one audit entry')
    assert.equal(duplicateLabels, 0)
    assert.deepEqual(chains.filter((r) => r.broken), [], 'AUDIT-3: every audit chain verifies')
    assert.ok(chains.length > 0)
    assert.ok(exits.every((e) => e.code === 0), `OPS-1: a graceful stop after the crashes exits 0 (${JSON.stringify(exits)})`)
    assert.ok(c.ok >= CYCLES * 5, `enough acknowledged decisions to mean something (${c.ok})`)
    assert.ok(ac.ok >= CYCLES, `enough acknowledged admin writes (${ac.ok})`)

    // An admin write commits its effect and audit entry, then marks its Idempotency-Key done in a
    // second step; a kill -9 in between leaves the key in flight. The effect marked the claim in
    // its own transaction, so the retry that takes the claim over replays it (never a second policy).
    assert.equal(adminDuplicates, 0, `LIMIT-2: one policy per admin Idempotency-Key — ${adminDuplicates} admin write(s) executed twice`)
  } finally {
    await db.close()
  }
}

test('T10 AUDIT-2 TRANSIT-3 LIMIT-2 AUDIT-1: kill -9 every 2–6 s under load on SQLite — 0 lost acknowledged decisions or audited writes, 0 duplicates, integrity ok, restart needs no manual step', { timeout: BUDGET_MS + 240_000 }, async (t) => {
  await t10(t, 'sqlite')
})

test('T10 AUDIT-2 TRANSIT-3 LIMIT-2 AUDIT-1 OPS-1: kill -9 of a random one of two instances on PostgreSQL + Redis — 0 lost, 0 duplicates across instances, amcheck ok', { timeout: BUDGET_MS + 240_000 }, async (t) => {
  await t10(t, 'postgres')
})
