import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { AuditLog } from './audit/audit.ts'
import { AuditSigner, Checkpointer } from './audit/checkpoints.ts'
import type { Cache } from './cache/cache.ts'
import { MemoryCache } from './cache/memory.ts'
import { RedisCache } from './cache/redis.ts'
import type { Config } from './config/load.ts'
import { systemClock, type Clock } from './core/clock.ts'
import { KyselyDecisionSink, SqliteWorkerDecisionSink } from './decisions/sinks.ts'
import { DecisionWriter } from './decisions/writer.ts'
import { InFlight } from './gateway/in-flight.ts'
import { DecisionRecords } from './decisions/records.ts'
import { IdempotencyStore } from './idempotency/store.ts'
import { Jobs } from './ops/jobs.ts'
import { AlertJob, AlertWebhooks } from './analytics/alerts.ts'
import { Analytics } from './analytics/analytics.ts'
import { OrgPurge } from './rights/purge.ts'
import { ArtifactStore } from './artifacts/artifacts.ts'
import { ReportStore } from './artifacts/reports.ts'
import { Backups, type BackupSettings } from './backup/backup.ts'
import { parseCron } from './backup/cron.ts'
import { backupKeyFromHex, type BackupKey } from './backup/format.ts'
import { backupJob } from './backup/schedule.ts'
import type { DestinationSettings } from './backup/destination.ts'
import type { DatabaseTarget } from './backup/snapshot.ts'
import { effectMarker } from './idempotency/context.ts'
import { createClassifier } from './classify/index.ts'
import type { Classifier } from './classify/facts.ts'
import { ChallengeHolds } from './friction/holds.ts'
import { HeuristicGrader, TemplateQuestions, type Grader, type QuestionSource } from './friction/friction.ts'
import { LlmGrader, LlmQuestions } from './friction/llm.ts'
import { PolicyStore } from './policy/policies.repo.ts'
import { OrgSettingsStore } from './orgs/org-settings.ts'
import { KeyStore } from './keys/keys.repo.ts'
import { createLogger, safeError, type Logger } from './observe/log.ts'
import { Metrics } from './observe/metrics.ts'
import { OrgStore } from './orgs/orgs.repo.ts'
import { OrgKeyring } from './privacy/org-keys.ts'
import { masterKeyFromHex, type MasterKey } from './privacy/wrap.ts'
import { FileKeyVault, type KeyVault } from './privacy/vault.ts'
import { UpstreamHttp } from './providers/http.ts'
import { ProviderRegistry } from './providers/registry.ts'
import { MemoryLimitStore, RedisLimitStore, type LimitStore } from './ratelimit/limiter.ts'
import { RateLimiter } from './ratelimit/limits.ts'
import { RateTiers } from './ratelimit/tiers.ts'
import type { ServerDeps } from './server.ts'
import type { TrustInstance } from './trust/instance.ts'
import { LoginLinks } from './identity/login-links.ts'
import { Oidc, type OidcProvider } from './identity/oidc.ts'
import { Passkeys } from './identity/passkeys.ts'
import { SessionStore } from './identity/sessions.ts'
import { UserStore } from './identity/users.ts'
import { LogOutbox, SmtpTransport, type MailTransport } from './mail/mail.ts'
import { InviteStore } from './orgs/invites.ts'
import { MemberStore } from './orgs/members.ts'
import { SsoStore } from './orgs/sso.ts'
import { openDatabase, type Database } from './storage/database.ts'
import { migrateToLatest } from './storage/migrations/index.ts'

/** The stores the CLI and the server share: database (migrated), audit log, keyring, orgs, keys. */
export interface Stores {
  readonly clock: Clock
  readonly log: Logger
  readonly db: Database
  readonly audit: AuditLog
  /** Signs the audit chains' heads (D9) with the instance's key file. */
  readonly checkpoints: Checkpointer
  readonly keyring: OrgKeyring
  readonly orgs: OrgStore
  readonly keys: KeyStore
  readonly users: UserStore
  readonly members: MemberStore
  readonly invites: InviteStore
  readonly links: LoginLinks
  readonly sso: SsoStore
  /** This instance's public origin (links, cookies, WebAuthn relying party). */
  readonly origin: string
  close(): Promise<void>
}

/**
 * The public origin: TOLLGATE_PUBLIC_URL, else the listen address — as `localhost` when it is a
 * loopback address, because WebAuthn relying-party ids cannot be IP addresses.
 */
export function publicOrigin(config: Config): string {
  if (config.server.publicUrl) return new URL(config.server.publicUrl).origin
  const scheme = config.server.tls ? 'https' : 'http'
  const host = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(config.server.host) ? 'localhost' : config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host
  return `${scheme}://${host}:${config.server.port}`
}

export interface Deps extends ServerDeps, Stores {
  readonly upstreamHttp: UpstreamHttp
  readonly jobs: Jobs
  /** AUDIT-4: the anomaly-alert evaluation (run by `jobs`; tests drive it directly). */
  readonly alerts: AlertJob
}

function googleProvider(config: Config): OidcProvider | undefined {
  const g = config.identity.google
  return g && { kind: 'google', orgId: undefined, issuer: g.issuer, clientId: g.clientId, clientSecret: g.clientSecret, allowedDomains: g.allowedDomains }
}

/**
 * TRUST-1: what the trust page may publish about this instance. Secrets (credentials, database,
 * Redis and SMTP URLs, the operator secret, the master key) become only "configured or not".
 */
export function trustInstance(config: Config, storage: 'sqlite' | 'postgres', cache: 'memory' | 'redis'): TrustInstance {
  const up = config.providers.upstreams
  const publicHttps = config.server.publicUrl?.startsWith('https://') ?? false
  const sec = config.security
  return {
    mode: config.mode,
    environments: [...config.server.environments],
    storage, cache,
    transport: { tls: config.server.tls !== undefined, publicHttps, hstsMaxAgeS: config.server.hstsMaxAgeS, trustedProxies: config.limits.trustedProxies.length },
    providers: Object.fromEntries(config.server.environments.map((env) => [env, Object.keys(up[env]).sort()])),
    identity: {
      googleSignIn: config.identity.google !== undefined,
      stepUpWindowS: config.identity.stepUpWindowS, sessionMaxAgeS: config.identity.sessionMaxAgeS,
      ssoSessionMaxAgeS: config.identity.ssoSessionMaxAgeS, ssoSessionIdleS: config.identity.ssoSessionIdleS, sessionRotateS: config.identity.sessionRotateS,
    },
    mail: config.mail.smtpUrl ? 'smtp' : 'log',
    opsSecret: config.ops.secret !== undefined,
    masterKey: config.masterKey ? 'setting' : 'generated',
    keyVault: keyVaultKind(config),
    limits: {
      authPerMin: config.limits.authPerMin, interceptPerMin: config.limits.interceptPerMin, apiPerMin: config.limits.apiPerMin,
      idempotencyTtlS: config.limits.idempotencyTtlS, idempotencyLockS: config.limits.idempotencyLockS,
      bodyLimitBytes: config.server.bodyLimitBytes, maxHeaderBytes: config.server.maxHeaderBytes, headersTimeoutMs: config.server.headersTimeoutMs,
      requestTimeoutMs: config.server.requestTimeoutMs, maxConnections: config.server.maxConnections, jsonMaxDepth: config.server.jsonMaxDepth,
      maxAttachments: config.limits.maxAttachments, maxAttachmentBytes: config.limits.maxAttachmentBytes, maxAttachmentsTotalBytes: config.limits.maxAttachmentsTotalBytes,
    },
    classifier: {
      model: config.classify.model, llm: config.classify.llmMode,
      llmActive: config.classify.llmMode !== 'off' && (up.production.anthropic?.apiKey !== undefined || up.production.gemini?.apiKey !== undefined),
    },
    challenge: { ...config.challenge },
    audit: { checkpointEvents: config.audit.checkpointEvents, checkpointS: config.audit.checkpointS },
    decisionBatchMax: config.decisions.batchMax,
    security: {
      contacts: [...sec.contacts], expiresAt: sec.expiresAt, policyUrl: sec.policyUrl, languages: [...sec.languages],
      canonical: publicHttps ? `${new URL(config.server.publicUrl!).origin}/.well-known/security.txt` : undefined,
    },
  }
}

export interface BuildOptions {
  readonly clock?: Clock
  readonly log?: Logger
  /** A classifier to use instead of building one (tests share one per process: the model loads once). Not closed by deps. */
  readonly classifier?: Classifier
}

/** The classifier (GW-3): embedded, escalating to the LLM classifier when production keys exist and it is not off. */
function buildClassifier(config: Config, http: UpstreamHttp, log: Logger, metrics: Metrics): Classifier {
  const c = config.classify
  const up = config.providers.upstreams.production
  const anthropic = up.anthropic?.apiKey ? { baseUrl: up.anthropic.baseUrl, apiKey: up.anthropic.apiKey, model: c.anthropicModel } : undefined
  const gemini = up.gemini?.apiKey ? { baseUrl: up.gemini.baseUrl, apiKey: up.gemini.apiKey, model: c.geminiModel } : undefined
  const llm = c.llmMode !== 'off' && (anthropic || gemini)
    ? { http, mode: c.llmMode, timeoutMs: c.timeoutMs, ...(anthropic ? { anthropic } : {}), ...(gemini ? { gemini } : {}),
      onFallback: (e: { provider: string; code: string }) => {
        metrics.classifierFallbacks.inc({ provider: e.provider })
        log.warn({ event: 'classifier_fallback', provider: e.provider, code: e.code }, 'LLM classifier unavailable: the embedded result stands')
      } }
    : undefined
  // `as_needed`: the model (~165 MB per worker) loads when a policy first needs it, or at start when one already does.
  return createClassifier({ embedded: { workers: c.workers, preloadModel: c.model === 'always' }, ...(llm ? { llm } : {}) })
}

/** `load`, remembered per argument list for `ttlMs` (at most 10,000 entries; beyond, it starts over). */
function cachedFor<A extends readonly string[], V>(clock: Clock, ttlMs: number, load: (args: A) => Promise<V>): (args: A) => Promise<V> {
  const hits = new Map<string, { value: V; until: number }>()
  return async (args) => {
    const k = args.join('\0')
    const now = clock.now()
    const hit = hits.get(k)
    if (hit && hit.until > now) return hit.value
    const value = await load(args)
    if (hits.size > 10_000) hits.clear()
    hits.set(k, { value, until: now + ttlMs })
    return value
  }
}

/**
 * Challenge questions and grading (GW-5): by the LLM (Anthropic, strict JSON) with
 * TOLLGATE_CHALLENGE_LLM=on and a production Anthropic key — falling back per call — else the
 * offline templates and heuristic.
 */
function buildFriction(config: Config, http: UpstreamHttp, log: Logger): { grader: Grader; questions: QuestionSource } {
  const offline = { grader: new HeuristicGrader(), questions: new TemplateQuestions() }
  const a = config.providers.upstreams.production.anthropic
  if (!config.challenge.llm || !a?.apiKey) return offline
  const o = {
    http, timeoutMs: config.classify.timeoutMs, anthropic: { baseUrl: a.baseUrl, apiKey: a.apiKey, model: config.classify.anthropicModel },
    onFallback: (e: { what: string; code: string }) => log.warn({ event: 'friction_llm_fallback', kind: e.what, code: e.code }, 'LLM challenge helper unavailable: the offline one answered'),
  }
  return { grader: new LlmGrader(o, offline.grader), questions: new LlmQuestions(o, offline.questions) }
}

/**
 * The master key: TOLLGATE_MASTER_KEY, or in development a key generated once into
 * `<dataDir>/master.key` (mode 0600). Production mode refuses to start without the setting.
 */
export function loadMasterKey(config: Config, log: Logger): MasterKey {
  if (config.masterKey) return masterKeyFromHex(config.masterKey.reveal())
  return masterKeyFromHex(developmentKeyFile(config, 'master.key', log, 'master_key_generated',
    'no TOLLGATE_MASTER_KEY set: generated a development master key in the data dir (set TOLLGATE_MASTER_KEY in production)'))
}

/** A 256-bit key kept in `<dataDir>/<name>` (0600), generated on first use; returns its hex. */
function developmentKeyFile(config: Config, name: string, log: Logger, event: string, warning: string): string {
  const path = join(config.storage.dataDir, name)
  mkdirSync(config.storage.dataDir, { recursive: true, mode: 0o700 })
  if (!existsSync(path)) {
    writeFileSync(path, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' })
    log.warn({ event }, warning)
  }
  chmodSync(path, 0o600)
  return readFileSync(path, 'utf8').trim()
}

/** The key vault (D13): a directory of KEK files, AWS KMS, or none. */
export function keyVaultKind(config: Config): 'file' | 'aws-kms' | undefined {
  return config.keyVaultDir !== undefined ? 'file' : config.keyVaultKms !== undefined ? 'aws-kms' : undefined
}

/** The AWS SDK is imported only when KMS is configured (it costs ~20 MB of memory). */
async function keyVaultOf(config: Config): Promise<KeyVault | undefined> {
  if (config.keyVaultDir !== undefined) return new FileKeyVault(config.keyVaultDir)
  const k = config.keyVaultKms
  if (k === undefined) return undefined
  const { AwsKmsKeyVault } = await import('./privacy/aws-kms-vault.ts')
  return new AwsKmsKeyVault({
    region: k.region, endpoint: k.endpoint, aliasPrefix: k.aliasPrefix, deletionWindowDays: k.deletionWindowDays,
    credentials: k.accessKeyId && k.secretAccessKey ? { accessKeyId: k.accessKeyId, secretAccessKey: k.secretAccessKey.reveal() } : undefined,
  })
}

/** Master keys being rotated out (CRYPTO-2): they still unwrap, never wrap. */
export function previousMasterKeys(config: Config): MasterKey[] {
  return (config.previousMasterKeys?.reveal() ?? '').split(',').map((k) => k.trim()).filter((k) => k !== '').map(masterKeyFromHex)
}

/**
 * The backup key (BACKUP-1, D12): TOLLGATE_BACKUP_KEY, or in development a key generated once into
 * `<dataDir>/backup.key` (0600) — never the master key, so rotating that one leaves old backups
 * restorable (CRYPTO-2). Undefined in production without the setting: backups are then off.
 */
export function loadBackupKey(config: Config, log: Logger): BackupKey | undefined {
  if (config.backup.key) return backupKeyFromHex(config.backup.key.reveal())
  if (config.mode === 'production') return undefined
  return backupKeyFromHex(developmentKeyFile(config, 'backup.key', log, 'backup_key_generated',
    'no TOLLGATE_BACKUP_KEY set: generated a development backup key in the data dir (keep a copy outside it: backups cannot be restored without it)'))
}

/** The database a backup copies and a restore replaces (the same one openDatabase opens). */
export function databaseTarget(config: Config): DatabaseTarget {
  const url = config.storage.databaseUrl?.reveal()
  return url ? { dialect: 'postgres', url } : { dialect: 'sqlite', path: join(config.storage.dataDir, 'tollgate.db') }
}

/**
 * Everything a backup needs, with its secrets revealed for the backup module, loaded on first use
 * (a development key file is made only when a backup is taken); undefined in production without a key.
 */
export function backupSettings(config: Config, log: Logger): (() => BackupSettings) | undefined {
  if (config.mode === 'production' && !config.backup.key) return undefined
  let loaded: BackupSettings | undefined
  return () => (loaded ??= backupSettingsWith(config, loadBackupKey(config, log)!))
}

function backupSettingsWith(config: Config, key: BackupKey): BackupSettings {
  return { key, retentionDays: config.backup.retentionDays, database: databaseTarget(config), destination: backupDestination(config) }
}

/** The configured backup destination: the bucket when one is set, else the folder. */
export function backupDestination(config: Config): DestinationSettings {
  const s3 = config.backup.s3
  return s3
    ? { kind: 's3', bucket: s3.bucket, prefix: s3.prefix, region: s3.region, endpoint: s3.endpoint,
      credentials: s3.accessKeyId && s3.secretAccessKey ? { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey.reveal() } : undefined }
    : { kind: 'dir', dir: config.backup.dir }
}

/** Keys a restore may use without being given one: TOLLGATE_BACKUP_KEY and an existing development key file (none is generated). */
export function configuredBackupKeys(config: Config): BackupKey[] {
  const path = join(config.storage.dataDir, 'backup.key')
  return [
    ...(config.backup.key ? [backupKeyFromHex(config.backup.key.reveal())] : []),
    ...(existsSync(path) ? [backupKeyFromHex(readFileSync(path, 'utf8').trim())] : []),
  ]
}

export async function buildStores(config: Config, opts: BuildOptions = {}): Promise<Stores> {
  const clock = opts.clock ?? systemClock
  const log = opts.log ?? createLogger(config.log.level)
  const db = openDatabase({ url: config.storage.databaseUrl?.reveal(), dataDir: config.storage.dataDir })
  try {
    await migrateToLatest(db.db, db.dialect)
  } catch (err) {
    await db.close()
    throw err
  }
  const audit = new AuditLog(clock, db.dialect)
  const checkpoints = new Checkpointer(db.db, clock, AuditSigner.fromFile(config.audit.signingKeyFile), { everyEvents: config.audit.checkpointEvents, everyMs: config.audit.checkpointS * 1000 })
  audit.checkpointer = checkpoints
  const keyring = new OrgKeyring(db.db, loadMasterKey(config, log), clock, previousMasterKeys(config), await keyVaultOf(config))
  const orgs = new OrgStore(db.db, clock, audit, keyring)
  const keys = new KeyStore(db.db, clock, audit, (err) => log.warn({ err: safeError(err) }, 'last_used_at update failed'))
  return {
    clock, log, db, audit, checkpoints, keyring, orgs, keys,
    users: new UserStore(db.db, clock),
    members: new MemberStore(db.db, clock),
    invites: new InviteStore(db.db, clock),
    links: new LoginLinks(db.db, clock),
    sso: new SsoStore(db.db, clock, keyring),
    origin: publicOrigin(config),
    close: () => db.close(),
  }
}

export async function buildDeps(config: Config, opts: BuildOptions = {}): Promise<Deps> {
  const stores = await buildStores(config, opts)
  const { clock, log, db } = stores
  const cache: Cache = config.cache.redisUrl ? new RedisCache(config.cache.redisUrl.reveal()) : new MemoryCache(clock)
  const metrics = new Metrics()
  const upstreamHttp = new UpstreamHttp({ connections: config.providers.maxConnections, headersTimeoutMs: config.providers.timeoutMs, bodyTimeoutMs: config.providers.idleTimeoutMs })
  const providers = new ProviderRegistry(config.providers, upstreamHttp)
  const sink = db.dialect === 'sqlite' ? new SqliteWorkerDecisionSink(db.sqlitePath!) : new KyselyDecisionSink(db.db)
  const inFlight = new InFlight()
  metrics.inFlight(() => inFlight.count)
  const decisions = new DecisionWriter(sink, config.decisions.batchMax, {
    batch: (size, ms, ok) => {
      metrics.decisionBatch.observe(size)
      if (ok) metrics.decisionCommit.observe(ms / 1000)
    },
  }, () => inFlight.count <= 1)
  const tls = config.server.tls ? { cert: readFileSync(config.server.tls.certPath), key: readFileSync(config.server.tls.keyPath) } : undefined
  const classifier = opts.classifier ?? buildClassifier(config, upstreamHttp, log, metrics)
  const holds = new ChallengeHolds(clock, { ttlMs: config.challenge.ttlS * 1000, maxAttempts: config.challenge.attempts, maxHolds: config.challenge.maxHolds })
  const orgSettings = new OrgSettingsStore(db.db, clock, stores.audit)
  // A member's role and team for policy matching (a role or team change applies within 30 s) and
  // an org's choice of LLM classification (within 5 s), read on every AI request: cached briefly.
  const memberOf = cachedFor(clock, 30_000, ([orgId, userId]: [string, string]) => stores.users.member(userId, orgId).then((m) => m ?? null))
  const llmModeOf = cachedFor(clock, 5_000, ([orgId]: [string]) => orgSettings.get(orgId).then((s) => s.classifierLlm))
  const id = config.identity
  const sessions = new SessionStore(db.db, clock, {
    longAbsoluteMs: id.sessionMaxAgeS * 1000, ssoAbsoluteMs: id.ssoSessionMaxAgeS * 1000, ssoIdleMs: id.ssoSessionIdleS * 1000,
    idleWriteMs: 60_000, rotateEveryMs: id.sessionRotateS * 1000, rotationGraceMs: 10_000,
  })
  const origin = stores.origin
  const idempotency = new IdempotencyStore(db.db, clock, { ttlMs: config.limits.idempotencyTtlS * 1000, lockMs: config.limits.idempotencyLockS * 1000 })
  stores.audit.onAppend = effectMarker(idempotency)
  // BACKUP-1: backups on TOLLGATE_BACKUP_CRON (one instance per slot) and POST /ops/backup.
  const backupConfig = backupSettings(config, log)
  const backups = backupConfig && new Backups(backupConfig, db.db, stores.audit, clock)
  const backupCron = config.backup.cron === undefined ? undefined : parseCron(config.backup.cron)
  const orgPurge = new OrgPurge(db.db, clock, stores.audit, stores.keyring, { delayMs: config.retention.orgPurgeDelayS * 1000, everyMs: config.retention.jobS * 1000 })
  const artifactJobMs = config.retention.artifactJobS * 1000
  const artifacts = new ArtifactStore(db.db, clock, stores.audit, stores.keyring)
  const reports = new ReportStore(db.db, clock, stores.audit, stores.keyring)
  const alertWebhooks = new AlertWebhooks(db.db, clock, stores.keyring)
  const alerts = new AlertJob(db.db, clock, alertWebhooks, {
    thresholds: { blocks: config.alerts.blocksPer5Min, signin_failures: config.alerts.signinFailuresPer5Min, rate_limited: config.alerts.rateLimitedPer5Min },
    timeoutMs: config.alerts.webhookTimeoutMs, allowPrivate: config.alerts.webhookPrivate === 'allow',
  }, { sent: (kind, outcome) => metrics.alerts.inc({ kind, outcome }) })
  const jobs = new Jobs([
    { name: 'idempotency_expired', everyMs: 60_000, run: () => idempotency.sweep() },
    { name: 'invites_closed', everyMs: 3_600_000, run: () => stores.invites.purgeClosed() },
    // A tenth of the interval, so no chain goes longer than the interval without a checkpoint.
    { name: 'audit_checkpoints', everyMs: Math.max(1000, (config.audit.checkpointS * 1000) / 10), run: () => stores.checkpoints.tick() },
    // RIGHTS-2: terminated orgs' data deleted by their deadline; keys another instance destroyed dropped from memory.
    { name: 'orgs_purged', everyMs: config.retention.jobS * 1000, run: () => orgPurge.run() },
    { name: 'org_keys_forgotten', everyMs: 60_000, run: () => stores.keyring.forgetDestroyed() },
    // D13: KEK deletions a crash interrupted between a termination's commit and the vault.
    { name: 'org_keks_destroyed', everyMs: 60_000, run: () => stores.keyring.shredPending() },
    // RIGHTS-3, GW-8: temporary artifacts past their 24 h expiry, and reports at their 30-day deadline.
    { name: 'artifacts_expired', everyMs: artifactJobMs, run: async () => (await artifacts.purgeExpired()) + (await reports.purgeExpired(artifactJobMs)) },
    // AUDIT-4: anomaly alerts, each (org, kind, 5-minute window) sent once across instances.
    { name: 'alerts', everyMs: 60_000, run: () => alerts.run() },
    ...(backups && typeof backupCron === 'object' ? [backupJob(backupCron, db.db, clock, () => backups.run({ type: 'system', id: null }))] : []),
  ], log)
  const lim = config.limits
  const fallbackLimits = new MemoryLimitStore(clock)
  const limitStore: LimitStore = config.cache.redisUrl ? new RedisLimitStore(config.cache.redisUrl.reveal()) : fallbackLimits
  const rate = new RateLimiter(limitStore, fallbackLimits, log, { refused: (g) => metrics.rateLimited.inc({ group: g }), fallback: (g) => metrics.rateStoreFallback.inc({ group: g }) })
  const tiers = new RateTiers(db.db, clock, stores.audit, { auth: lim.authPerMin, intercept: lim.interceptPerMin, api: lim.apiPerMin })
  const mail: MailTransport = config.mail.smtpUrl ? new SmtpTransport(config.mail.smtpUrl.reveal(), config.mail.from) : new LogOutbox(log)
  return {
    ...stores,
    cache, metrics, upstreamHttp, providers, decisions, inFlight, sessions, mail, rate, tiers,
    records: new DecisionRecords(db.db),
    classifier, holds, classifierModel: config.classify.model,
    policies: new PolicyStore(db.db, clock, stores.audit),
    orgSettings,
    ...buildFriction(config, upstreamHttp, log),
    // An org's choice of LLM classification, cached briefly (a change applies within 5 s).
    classifierLlmOf: (orgId: string) => llmModeOf([orgId]),
    memberOf: async (orgId: string, userId: string | null) => (userId === null ? null : memberOf([orgId, userId])),
    idempotency,
    jobs,
    alerts, alertWebhooks,
    analytics: new Analytics(db.db),
    oidc: new Oidc(`${origin}/auth/callback`, config.mode === 'development'),
    google: googleProvider(config),
    passkeys: new Passkeys(db.db, clock, { id: new URL(origin).hostname, name: 'Tollgate', origin }),
    stepUpWindowMs: id.stepUpWindowS * 1000,
    orgPurgeDelayMs: config.retention.orgPurgeDelayS * 1000,
    secureCookies: true,
    opsSecret: config.ops.secret,
    backups,
    trust: trustInstance(config, db.dialect, cache.kind),
    environments: config.server.environments,
    http: {
      bodyLimitBytes: config.server.bodyLimitBytes, tls, hstsMaxAgeS: config.server.hstsMaxAgeS, publicUrl: config.server.publicUrl, trustedProxies: lim.trustedProxies,
      maxHeaderBytes: config.server.maxHeaderBytes, headersTimeoutMs: config.server.headersTimeoutMs, requestTimeoutMs: config.server.requestTimeoutMs,
      maxConnections: config.server.maxConnections, jsonMaxDepth: config.server.jsonMaxDepth,
    },
    attachmentLimits: { count: lim.maxAttachments, bytes: lim.maxAttachmentBytes, totalBytes: lim.maxAttachmentsTotalBytes },
    async close() {
      jobs.stop()
      holds.close()
      if (!opts.classifier) await classifier.close()
      await decisions.close()
      await upstreamHttp.close()
      await limitStore.close()
      if (limitStore !== fallbackLimits) await fallbackLimits.close()
      await cache.close()
      await stores.close()
    },
  }
}
