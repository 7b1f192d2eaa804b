import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { loadConfig, type Config } from '../../src/config/load.ts'
import type { Clock } from '../../src/core/clock.ts'
import { buildDeps, type Deps } from '../../src/deps.ts'
import { createClassifier } from '../../src/classify/index.ts'
import type { Classifier } from '../../src/classify/facts.ts'
import { silentLogger, type Logger } from '../../src/observe/log.ts'
import { buildServer } from '../../src/server.ts'
import { freshPostgres, needService, REDIS_URL } from './services.ts'
import { freePort } from '../../scripts/lib/instances.ts'

export { freePort }

export const TEST_MASTER_KEY = 'a'.repeat(64)

export interface TestApp {
  readonly url: string
  readonly deps: Deps
  readonly app: FastifyInstance
  readonly config: Config
  readonly dataDir: string
  close(): Promise<void>
}

export interface AppOptions {
  readonly env?: Record<string, string>
  /** Run on a fresh PostgreSQL database (skipped/failed per needService when it is not there). */
  readonly postgres?: boolean
  readonly redis?: boolean
  readonly clock?: Clock
  readonly log?: Logger
  /** An existing data dir (to restart an app on the same SQLite file). */
  readonly dataDir?: string
  readonly databaseUrl?: string
  /** Another classifier than the shared embedded one (a failing one, for fail-closed tests). */
  readonly classifier?: Classifier
}

let classifier: Classifier | undefined
/**
 * One embedded classifier per test process, shared by every app it starts: the model loads once
 * (~1.4 s, ~200 MB) instead of once per app. Its idle worker threads never keep the process alive.
 */
export function sharedClassifier(): Classifier {
  classifier ??= createClassifier({ embedded: { workers: 1 } })
  return classifier
}

/** Polls `check` every 10 ms until it holds; fails naming `what` after `timeoutMs`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** Builds config from env like production does; throws with every problem if it is invalid. */
export function testConfig(env: Record<string, string | undefined>): Config {
  const r = loadConfig({ TOLLGATE_LOG_LEVEL: 'silent', TOLLGATE_MASTER_KEY: TEST_MASTER_KEY, ...env })
  if (!r.ok) throw new Error(`test config invalid: ${r.problems.join('; ')}`)
  return r.config
}

/**
 * A whole Tollgate (deps + server) on 127.0.0.1 with a random port and its own data dir.
 * Returns undefined when a required service is missing (and the test was skipped).
 */
export async function startApp(t: TestContext, opts: AppOptions = {}): Promise<TestApp | undefined> {
  if (opts.postgres && !(await needService(t, 'postgres'))) return undefined
  if (opts.redis && !(await needService(t, 'redis'))) return undefined
  const ownDir = opts.dataDir === undefined
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'tollgate-test-'))
  const databaseUrl = opts.databaseUrl ?? (opts.postgres ? await freshPostgres(t) : undefined)
  const port = opts.env?.['TOLLGATE_PORT'] ?? String(await freePort())
  const config = testConfig({
    TOLLGATE_DATA_DIR: dataDir,
    TOLLGATE_PORT: port,
    TOLLGATE_PUBLIC_URL: `http://localhost:${port}`,
    // Tests drive far more than 10-120 requests a minute; the rate-limit tests set real limits.
    TOLLGATE_LIMIT_AUTH_PER_MIN: '1000000', TOLLGATE_LIMIT_INTERCEPT_PER_MIN: '1000000', TOLLGATE_LIMIT_API_PER_MIN: '1000000',
    // The embedding model runs only when a test's policy needs it (the rules and PII detectors always
    // run); tests of classification itself set TOLLGATE_CLASSIFIER_MODEL=always.
    TOLLGATE_CLASSIFIER_MODEL: 'as_needed',
    ...(databaseUrl ? { TOLLGATE_DATABASE_URL: databaseUrl } : {}),
    ...(opts.redis ? { TOLLGATE_REDIS_URL: REDIS_URL } : {}),
    ...opts.env,
  })
  // The model loads once per test process, before the first request's clock starts.
  const usedClassifier = opts.classifier ?? sharedClassifier()
  await usedClassifier.ready?.()
  const deps = await buildDeps(config, { log: opts.log ?? silentLogger, classifier: usedClassifier, ...(opts.clock ? { clock: opts.clock } : {}) })
  const app = await buildServer(deps)
  const address = await app.listen({ host: '127.0.0.1', port: config.server.port })
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await app.close()
    await deps.close()
  }
  t.after(async () => {
    await close()
    if (ownDir) rmSync(dataDir, { recursive: true, force: true })
  })
  return { url: address.replace('localhost', '127.0.0.1'), deps, app, config, dataDir, close }
}

/** An org with one sandbox and one production key, created as the operator would. */
export async function orgWithKeys(deps: Pick<Deps, 'orgs' | 'keys'>, slug = `org-${Math.random().toString(36).slice(2, 10)}`) {
  const org = await deps.orgs.create(slug, { type: 'operator', id: null })
  if (!org) throw new Error('org exists')
  const sandbox = await deps.keys.create({ orgId: org.id, environment: 'sandbox', actor: { type: 'operator', id: null } })
  const production = await deps.keys.create({ orgId: org.id, environment: 'production', actor: { type: 'operator', id: null } })
  return { org, sandbox: sandbox.key, production: production.key, sandboxId: sandbox.info.id, productionId: production.info.id }
}

/** Drafts, tries in sandbox and promotes `document` as the org's production policy (the real path). */
export async function promotePolicy(deps: Pick<Deps, 'policies'>, orgId: string, document: unknown): Promise<void> {
  const actor = { type: 'operator' as const, id: null }
  const draft = await deps.policies.createDraft({ orgId, document, actor })
  await deps.policies.activate({ orgId, id: draft.id, actor })
  await deps.policies.recordTest({ orgId, id: draft.id, actor })
  await deps.policies.promote({ orgId, id: draft.id, actor })
}
