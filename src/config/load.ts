import { resolve } from 'node:path'
import type { Secret } from '../core/secret.ts'
import { httpUrl, isLoopbackHost, Reader, type Problems, type SettingDoc } from './schema.ts'
import { parseCron } from '../backup/cron.ts'

import { ENVIRONMENTS, UPSTREAM_PROVIDERS, type Environment, type ProviderName, type UpstreamProvider } from '../core/model.ts'

export interface UpstreamConfig {
  readonly apiKey: Secret | undefined
  readonly baseUrl: string
}

export interface Config {
  readonly mode: 'development' | 'production'
  readonly server: {
    readonly host: string
    readonly port: number
    readonly publicUrl: string | undefined
    readonly tls: { readonly certPath: string; readonly keyPath: string } | undefined
    readonly hstsMaxAgeS: number
    readonly bodyLimitBytes: number
    readonly maxHeaderBytes: number
    readonly headersTimeoutMs: number
    readonly requestTimeoutMs: number
    readonly maxConnections: number
    readonly jsonMaxDepth: number
    readonly shutdownTimeoutMs: number
    /** V8's heap growing factor for `serve`, as 1 + n/100; 0 leaves V8's own. */
    readonly heapGrowthPercent: number
    readonly environments: readonly Environment[]
  }
  readonly storage: {
    readonly dataDir: string
    readonly databaseUrl: Secret | undefined
  }
  readonly cache: { readonly redisUrl: Secret | undefined }
  readonly log: { readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'silent' }
  readonly masterKey: Secret | undefined
  /** TOLLGATE_MASTER_KEY_PREVIOUS: comma-separated keys being rotated out (CRYPTO-2). */
  readonly previousMasterKeys: Secret | undefined
  /** TOLLGATE_KEY_VAULT_DIR: per-org key-encryption keys outside the database and its backups (D13); unset = no vault. */
  readonly keyVaultDir: string | undefined
  /** TOLLGATE_KEY_VAULT_AWS_KMS_*: the key vault on AWS KMS instead (one KMS key per org); unset = not used. */
  readonly keyVaultKms: { readonly region: string; readonly endpoint: string | undefined; readonly aliasPrefix: string; readonly deletionWindowDays: number; readonly accessKeyId: string | undefined; readonly secretAccessKey: Secret | undefined } | undefined
  readonly providers: {
    readonly upstreams: Readonly<Record<Environment, Readonly<Partial<Record<UpstreamProvider, UpstreamConfig>>>>>
    readonly routes: readonly { readonly pattern: string; readonly provider: ProviderName }[]
    readonly models: readonly string[]
    readonly timeoutMs: number
    readonly idleTimeoutMs: number
    readonly maxConnections: number
  }
  readonly decisions: { readonly batchMax: number }
  readonly identity: {
    readonly google: { readonly issuer: string; readonly clientId: string; readonly clientSecret: Secret | undefined; readonly allowedDomains: readonly string[] } | undefined
    readonly stepUpWindowS: number
    readonly sessionMaxAgeS: number
    readonly ssoSessionMaxAgeS: number
    readonly ssoSessionIdleS: number
    readonly sessionRotateS: number
    readonly bootstrapOrg: string
    readonly bootstrapEmail: string
  }
  readonly mail: { readonly smtpUrl: Secret | undefined; readonly from: string }
  readonly ops: { readonly secret: Secret | undefined }
  readonly limits: {
    readonly authPerMin: number
    readonly interceptPerMin: number
    readonly apiPerMin: number
    readonly trustedProxies: readonly string[]
    readonly idempotencyTtlS: number
    readonly idempotencyLockS: number
    readonly maxAttachments: number
    readonly maxAttachmentBytes: number
    readonly maxAttachmentsTotalBytes: number
  }
  readonly classify: {
    readonly workers: number
    readonly model: 'always' | 'as_needed'
    readonly llmMode: 'off' | 'low_margin' | 'always'
    readonly anthropicModel: string
    readonly geminiModel: string
    readonly timeoutMs: number
  }
  readonly challenge: { readonly ttlS: number; readonly attempts: number; readonly maxHolds: number; readonly llm: boolean }
  readonly audit: { readonly signingKeyFile: string; readonly checkpointEvents: number; readonly checkpointS: number }
  /** AUDIT-4: anomaly alerts to each org's webhook — events per 5 minutes that trigger one (0: off) and the delivery timeout. */
  readonly alerts: { readonly blocksPer5Min: number; readonly signinFailuresPer5Min: number; readonly rateLimitedPer5Min: number; readonly webhookTimeoutMs: number; readonly webhookPrivate: 'deny' | 'allow' }
  /** BACKUP-1, D12: encrypted backups to a folder or an S3-compatible bucket. */
  readonly backup: {
    /** 64 hex; unset: generated into the data dir in development, no backups in production. */
    readonly key: Secret | undefined
    readonly dir: string
    readonly retentionDays: number
    readonly cron: string | undefined
    readonly s3: {
      readonly bucket: string
      readonly prefix: string
      readonly region: string
      readonly endpoint: string | undefined
      readonly accessKeyId: string | undefined
      readonly secretAccessKey: Secret | undefined
    } | undefined
  }
  /**
   * RIGHTS-2, D13: a terminated org's data is deleted this long after termination, by a job run this often.
   * RIGHTS-3, GW-8: expired temporary artifacts and 30-day-old reports are deleted by a job run every `artifactJobS` (≤ 1 h).
   */
  readonly retention: { readonly orgPurgeDelayS: number; readonly jobS: number; readonly artifactJobS: number }
  /** RFC 9116 security.txt: served only when a contact is set; Expires is never computed (it must not drift). */
  readonly security: {
    readonly contacts: readonly string[]
    /** Milliseconds since the epoch; always set when `contacts` is not empty. */
    readonly expiresAt: number | undefined
    readonly policyUrl: string | undefined
    readonly languages: readonly string[]
  }
}

export const DEFAULT_ROUTES = 'claude-*=anthropic,gpt-*=openai,chatgpt-*=openai,o1*=openai,o3*=openai,o4*=openai,gemini-*=gemini,local-*=local'

/** Model names recorded verbatim in decision records; any other name is recorded as `other`. */
export const DEFAULT_MODELS = [
  'claude-opus-4-5', 'claude-opus-4-1', 'claude-sonnet-4-5', 'claude-sonnet-4-0', 'claude-haiku-4-5', 'claude-3-5-haiku-latest',
  'gpt-5', 'gpt-5-mini', 'gpt-5-nano', 'gpt-4.1', 'gpt-4.1-mini', 'gpt-4o', 'gpt-4o-mini', 'o3', 'o3-mini', 'o4-mini',
  'gemini-2.5-pro', 'gemini-2.5-flash', 'gemini-2.5-flash-lite', 'gemini-2.0-flash',
  'local-echo',
].join(',')

const DEFAULT_BASE_URLS: Record<UpstreamProvider, string> = {
  anthropic: 'https://api.anthropic.com',
  openai: 'https://api.openai.com/v1',
  gemini: 'https://generativelanguage.googleapis.com',
}

const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/

export type LoadResult = { ok: true; config: Config; docs: SettingDoc[] } | { ok: false; problems: Problems; docs: SettingDoc[] }

/** Parses and validates every setting. Pure: reads only `env`, returns a frozen Config or every problem. */
export function loadConfig(env: Record<string, string | undefined>, cwd = process.cwd()): LoadResult {
  const r = new Reader(env)
  const mode = r.oneOf('TOLLGATE_MODE', 'development', ['development', 'production'] as const,
    'development generates a local master key in the data dir; production requires TOLLGATE_MASTER_KEY and TLS to non-loopback databases.')
  const host = r.string('TOLLGATE_HOST', '127.0.0.1', 'Address to listen on.')
  const port = r.int('TOLLGATE_PORT', 8787, 'port', 'TCP port to listen on (0 picks a free port).', 0, 65535)
  const publicUrl = r.optional('TOLLGATE_PUBLIC_URL', 'The URL clients use to reach this instance (for links); https:// turns on HSTS behind a TLS proxy.', httpUrl)
  const certPath = r.optional('TOLLGATE_TLS_CERT', 'PEM certificate file; with TOLLGATE_TLS_KEY, Tollgate terminates TLS itself (TLS 1.2 minimum).')
  const keyPath = r.optional('TOLLGATE_TLS_KEY', 'PEM private key file for TOLLGATE_TLS_CERT.')
  if ((certPath === undefined) !== (keyPath === undefined)) r.problems.push('TOLLGATE_TLS_CERT and TOLLGATE_TLS_KEY must be set together (or neither).')
  const hstsMaxAgeS = r.int('TOLLGATE_HSTS_MAX_AGE_S', 31536000, 'seconds', 'HSTS max-age sent on every response when served over TLS.', 0, 63072000)
  const bodyLimitBytes = r.int('TOLLGATE_BODY_LIMIT_BYTES', 10 * 1024 * 1024, 'bytes', 'Largest request body accepted; larger ones get 413.', 1024, 100 * 1024 * 1024)
  // LIMIT-3: what one client may hold of the server before a byte of it reaches a route.
  const maxHeaderBytes = r.int('TOLLGATE_MAX_HEADER_BYTES', 16384, 'bytes', 'Largest request line plus headers accepted; larger ones get 431.', 1024, 1024 * 1024)
  const headersTimeoutMs = r.int('TOLLGATE_HEADERS_TIMEOUT_MS', 10000, 'ms', 'Time a client has to send the request headers; a slower one (slowloris) gets 408 and is disconnected.', 1000, 600000)
  const requestTimeoutMs = r.int('TOLLGATE_REQUEST_TIMEOUT_MS', 60000, 'ms', 'Time a client has to send the whole request, body included (the answer may take longer); a slower one gets 408.', 1000, 3600000)
  if (headersTimeoutMs > requestTimeoutMs) r.problems.push('TOLLGATE_HEADERS_TIMEOUT_MS must not be larger than TOLLGATE_REQUEST_TIMEOUT_MS (the headers are part of the request).')
  const serverConnections = r.int('TOLLGATE_MAX_CONNECTIONS', 1024, 'connections', 'Most client connections open at once; further ones are closed as they arrive.', 1, 1_000_000)
  const jsonMaxDepth = r.int('TOLLGATE_JSON_MAX_DEPTH', 64, 'levels', 'Deepest nesting of objects and arrays in a JSON body; deeper ones get 400 before they are parsed.', 2, 10000)
  const shutdownTimeoutMs = r.int('TOLLGATE_SHUTDOWN_TIMEOUT_MS', 15000, 'ms', 'How long a graceful shutdown waits for in-flight requests.', 0, 600000)
  const heapGrowthPercent = r.int('TOLLGATE_HEAP_GROWTH_PERCENT', 30, 'percent',
    "How far `serve` lets the JavaScript heap grow past what is live before a full garbage collection (V8's --heap-growing-percent; every thread). 0 leaves V8's own factor, up to 4x: ~40 MB more under load, and no faster in the bench.", 0, 300)
  const envList = r.list('TOLLGATE_ENVIRONMENTS', 'sandbox,production', 'Key environments this instance serves; keys of another environment get 403.')
  const environments = envList.filter((e): e is Environment => (ENVIRONMENTS as readonly string[]).includes(e))
  if (environments.length !== envList.length || environments.length === 0) r.problems.push('TOLLGATE_ENVIRONMENTS must list sandbox and/or production, comma-separated.')

  const dataDir = resolve(cwd, r.string('TOLLGATE_DATA_DIR', './data', 'Directory for the SQLite database and the development master key.'))
  const databaseUrl = r.secret('TOLLGATE_DATABASE_URL', 'postgres://user:pass@host:5432/db to use PostgreSQL; unset uses SQLite in the data dir.', (v) =>
    /^postgres(ql)?:\/\//.test(v) ? undefined : 'must start with postgres:// (unset it to use the embedded SQLite database).')
  const redisUrl = r.secret('TOLLGATE_REDIS_URL', 'redis://host:6379 to share cache, limits and revocations across instances; unset uses process memory.', (v) =>
    /^rediss?:\/\//.test(v) ? undefined : 'must start with redis:// or rediss://.')
  const level = r.oneOf('TOLLGATE_LOG_LEVEL', 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'silent'] as const, 'Minimum level of the JSON log on stdout.')
  const masterKey = r.secret('TOLLGATE_MASTER_KEY', 'Key that wraps every per-org key: 64 hex characters. In development an unset key is generated into the data dir.', (v) =>
    /^[0-9a-fA-F]{64}$/.test(v) ? undefined : 'must be 64 hex characters — generate one with: openssl rand -hex 32')
  if (mode === 'production' && masterKey === undefined) r.problems.push('TOLLGATE_MASTER_KEY is required when TOLLGATE_MODE=production — generate one with: openssl rand -hex 32')
  const previousMasterKeys = r.secret('TOLLGATE_MASTER_KEY_PREVIOUS', 'Master keys being rotated out (CRYPTO-2), comma-separated, 64 hex characters each: org keys wrapped under them still open until `tollgate master-key rewrap` moves them under TOLLGATE_MASTER_KEY.', (v) =>
    v.split(',').every((k) => /^[0-9a-fA-F]{64}$/.test(k.trim())) ? undefined : 'must be 64-hex-character keys separated by commas')
  const keyVault = r.optional('TOLLGATE_KEY_VAULT_DIR', 'Directory of per-org key-encryption keys (D13), outside the data dir and its backups; shared storage when several instances run. Set: terminating an org also makes its data in old backups unreadable. Unset: crypto-shredding reaches the live database only.')
  const keyVaultDir = keyVault === undefined ? undefined : resolve(cwd, keyVault)
  const kmsRegion = r.optional('TOLLGATE_KEY_VAULT_AWS_KMS_REGION', 'The key vault on AWS KMS (D13): one KMS key per org, shared by every instance, scheduled for deletion when the org is terminated. The region (e.g. eu-west-1); unset = not used. Not with TOLLGATE_KEY_VAULT_DIR.')
  const kmsEndpoint = r.optional('TOLLGATE_KEY_VAULT_AWS_KMS_ENDPOINT', 'Endpoint URL of a KMS-compatible service (a VPC endpoint, LocalStack); unset: AWS KMS in the region.', httpUrl)
  const kmsAliasPrefix = r.string('TOLLGATE_KEY_VAULT_AWS_KMS_ALIAS_PREFIX', 'alias/tollgate/', 'Alias prefix of the per-org KMS keys (the org id follows).')
  const kmsDeletionDays = r.int('TOLLGATE_KEY_VAULT_AWS_KMS_DELETION_DAYS', 7, 'days', 'Waiting period AWS applies before deleting a terminated org\'s KMS key (7-30); the key is unusable from the termination on.', 7, 30)
  const kmsAccessKeyId = r.optional('TOLLGATE_KEY_VAULT_AWS_ACCESS_KEY_ID', 'Access key id for KMS; unset uses the AWS SDK default credential chain (environment, instance role).')
  const kmsSecret = r.secret('TOLLGATE_KEY_VAULT_AWS_SECRET_ACCESS_KEY', 'Secret access key for TOLLGATE_KEY_VAULT_AWS_ACCESS_KEY_ID.')
  if ((kmsAccessKeyId === undefined) !== (kmsSecret === undefined)) r.problems.push('TOLLGATE_KEY_VAULT_AWS_ACCESS_KEY_ID and TOLLGATE_KEY_VAULT_AWS_SECRET_ACCESS_KEY must be set together (or neither).')
  if (kmsRegion !== undefined && keyVaultDir !== undefined) r.problems.push('Set one key vault: TOLLGATE_KEY_VAULT_DIR or TOLLGATE_KEY_VAULT_AWS_KMS_REGION, not both.')
  if (kmsRegion !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d+$/.test(kmsRegion)) r.problems.push('TOLLGATE_KEY_VAULT_AWS_KMS_REGION: an AWS region name such as eu-west-1.')
  const keyVaultKms = kmsRegion === undefined ? undefined
    : { region: kmsRegion, endpoint: kmsEndpoint, aliasPrefix: kmsAliasPrefix, deletionWindowDays: kmsDeletionDays, accessKeyId: kmsAccessKeyId, secretAccessKey: kmsSecret }
  // D14: in production, a database or cache that is not on this host must be reached over TLS.
  if (mode === 'production' && databaseUrl && !tlsOrLocal(databaseUrl.reveal(), (u) => /^(require|verify-ca|verify-full)$/.test(u.searchParams.get('sslmode') ?? ''))) {
    r.problems.push('TOLLGATE_DATABASE_URL points at another host without TLS: add ?sslmode=verify-full (or require) in production mode.')
  }
  if (mode === 'production' && redisUrl && !tlsOrLocal(redisUrl.reveal(), (u) => u.protocol === 'rediss:')) {
    r.problems.push('TOLLGATE_REDIS_URL points at another host without TLS: use rediss:// in production mode.')
  }

  const upstreams: Record<Environment, Partial<Record<UpstreamProvider, UpstreamConfig>>> = { sandbox: {}, production: {} }
  for (const p of UPSTREAM_PROVIDERS) {
    const P = p.toUpperCase()
    const prodKey = r.secret(`${P}_API_KEY`, `${p} credential for production keys.`)
    const prodUrl = r.optional(`${P}_BASE_URL`, `${p} API base URL for production keys (default ${DEFAULT_BASE_URLS[p]}).`, httpUrl)
    const sbKey = r.secret(`TOLLGATE_SANDBOX_${P}_API_KEY`, `${p} credential for sandbox keys; without it sandbox requests are answered by the local provider.`)
    const sbUrl = r.optional(`TOLLGATE_SANDBOX_${P}_BASE_URL`, `${p} API base URL for sandbox keys.`, httpUrl)
    // An OpenAI-compatible server (Ollama, vLLM, llama.cpp) may need only a base URL, no key.
    const configured = (key: Secret | undefined, url: string | undefined) => key !== undefined || (p === 'openai' && url !== undefined)
    if (configured(prodKey, prodUrl)) upstreams.production[p] = { apiKey: prodKey, baseUrl: prodUrl ?? DEFAULT_BASE_URLS[p] }
    if (configured(sbKey, sbUrl)) upstreams.sandbox[p] = { apiKey: sbKey, baseUrl: sbUrl ?? DEFAULT_BASE_URLS[p] }
  }
  const routes: { pattern: string; provider: ProviderName }[] = []
  for (const entry of r.list('TOLLGATE_MODEL_ROUTES', DEFAULT_ROUTES, 'Model name → provider, first match wins: pattern=provider, where pattern is a name or a prefix ending in *.')) {
    const m = /^([A-Za-z0-9._:/-]+\*?)=(anthropic|openai|gemini|local)$/.exec(entry)
    if (!m) {
      r.problems.push(`TOLLGATE_MODEL_ROUTES entry #${routes.length + 1} must look like claude-*=anthropic (providers: anthropic, openai, gemini, local).`)
      continue
    }
    routes.push({ pattern: m[1]!, provider: m[2] as ProviderName })
  }
  const models = r.list('TOLLGATE_MODELS', DEFAULT_MODELS, 'Model names listed by /v1/models and recorded verbatim in decision records (others are recorded as "other").')
  if (models.some((m) => !MODEL_NAME.test(m))) r.problems.push('TOLLGATE_MODELS entries must be model names (letters, digits, . _ : / -).')
  const timeoutMs = r.int('TOLLGATE_UPSTREAM_TIMEOUT_MS', 120000, 'ms', 'How long to wait for an upstream response to start.', 100, 3600000)
  const idleTimeoutMs = r.int('TOLLGATE_UPSTREAM_IDLE_TIMEOUT_MS', 60000, 'ms', 'Longest silence allowed inside an upstream response or stream.', 100, 3600000)
  const maxConnections = r.int('TOLLGATE_UPSTREAM_CONNECTIONS', 256, 'connections', 'Connection pool size per upstream origin.', 1, 10000)
  const batchMax = r.int('TOLLGATE_DECISION_BATCH_MAX', 512, 'records', 'Most decision records group-committed in one transaction.', 1, 10000)

  const googleClientId = r.optional('TOLLGATE_GOOGLE_CLIENT_ID', 'OAuth client id for "Sign in with Google" (unset: Google sign-in is off).')
  const googleClientSecret = r.secret('TOLLGATE_GOOGLE_CLIENT_SECRET', 'OAuth client secret for Google sign-in.')
  const googleIssuer = r.string('TOLLGATE_GOOGLE_ISSUER', 'https://accounts.google.com', 'OpenID issuer for Google sign-in (a local stand-in in tests).', httpUrl)
  const googleDomains = r.list('TOLLGATE_GOOGLE_ALLOWED_DOMAINS', '', 'Google Workspace domains allowed to sign in (checked against the verified email and the hd claim); empty allows any invited Google account.')
  if (googleClientSecret && !googleClientId) r.problems.push('TOLLGATE_GOOGLE_CLIENT_SECRET is set without TOLLGATE_GOOGLE_CLIENT_ID.')
  const stepUpWindowS = r.int('TOLLGATE_STEP_UP_WINDOW_S', 600, 'seconds', 'How recent an authentication (passkey or IdP sign-in) must be for sensitive operations (AUTH-6).', 30, 3600)
  const sessionMaxAgeS = r.int('TOLLGATE_SESSION_MAX_AGE_S', 2592000, 'seconds', 'Absolute lifetime of Google, bootstrap-link and passkey sessions (D5: 30 days).', 300, 2592000)
  const ssoSessionMaxAgeS = r.int('TOLLGATE_SSO_SESSION_MAX_AGE_S', 28800, 'seconds', 'Absolute lifetime of org SSO sessions (AUTH-4: 8 hours).', 300, 86400)
  const ssoSessionIdleS = r.int('TOLLGATE_SSO_SESSION_IDLE_S', 3600, 'seconds', 'Idle timeout of org SSO sessions (AUTH-4: 1 hour).', 60, 86400)
  const sessionRotateS = r.int('TOLLGATE_SESSION_ROTATE_S', 86400, 'seconds', 'A session in use gets a new token at least this often (AUTH-5).', 60, 2592000)
  const bootstrapOrg = r.string('TOLLGATE_BOOTSTRAP_ORG', 'default', 'Slug of the org created on the first start with an empty database (AUTH-7).', (v) => /^[a-z0-9][a-z0-9-]{1,62}$/.test(v) ? undefined : 'must be 2-63 lowercase letters, digits or dashes.')
  const bootstrapEmail = r.string('TOLLGATE_BOOTSTRAP_EMAIL', 'owner@tollgate.invalid', 'Email of the first OWNER created on the first start (they sign in with the printed link, then register a passkey).', (v) => /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v) ? undefined : 'must be an email address.')
  const smtpUrl = r.secret('TOLLGATE_SMTP_URL', 'smtp:// or smtps:// URL of the mail server for invites; unset writes invites to the server log (development only).', (v) =>
    /^smtps?:\/\//.test(v) ? undefined : 'must start with smtp:// or smtps://.')
  const mailFrom = r.string('TOLLGATE_MAIL_FROM', 'Tollgate <tollgate@localhost>', 'From address of invite mail.')
  if (mode === 'production' && smtpUrl === undefined) r.problems.push('TOLLGATE_SMTP_URL is required when TOLLGATE_MODE=production: invites would otherwise be written to the log, links included.')
  const opsSecret = r.secret('TOLLGATE_OPS_SECRET', 'Secret for the operator endpoints (POST /ops/backup, /ops/seed) in the X-Backup-Secret header; unset turns them off (404).', (v) =>
    v.length >= 32 ? undefined : 'must be at least 32 characters — generate one with: openssl rand -hex 32')

  const authPerMin = r.int('TOLLGATE_LIMIT_AUTH_PER_MIN', 10, 'requests per 60 s', 'Sign-in, callbacks, invites and operator calls per client address in any 60 s (LIMIT-1).', 1, 1_000_000)
  const interceptPerMin = r.int('TOLLGATE_LIMIT_INTERCEPT_PER_MIN', 30, 'requests per 60 s', 'AI requests per key and per actor in any 60 s (LIMIT-1); per-org tiers override it (tollgate limits set).', 1, 1_000_000)
  const apiPerMin = r.int('TOLLGATE_LIMIT_API_PER_MIN', 120, 'requests per 60 s', 'Admin API requests per person or admin key in any 60 s (LIMIT-1); per-org tiers override it.', 1, 1_000_000)
  const trustedProxies = r.list('TOLLGATE_TRUSTED_PROXIES', '', 'Addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed; from anyone else it is ignored.')
  const proxyProblem = trustedProxies.find((p) => !/^[0-9a-fA-F.:]+(\/\d{1,3})?$/.test(p))
  if (proxyProblem !== undefined) r.problems.push('TOLLGATE_TRUSTED_PROXIES entries must be IP addresses or CIDR ranges, e.g. 10.0.0.0/8,127.0.0.1.')
  const idempotencyTtlS = r.int('TOLLGATE_IDEMPOTENCY_TTL_S', 86400, 'seconds', 'How long an Idempotency-Key is remembered (LIMIT-2: 24 h).', 1, 7 * 86400)
  const idempotencyLockS = r.int('TOLLGATE_IDEMPOTENCY_LOCK_S', 120, 'seconds', 'How long a claimed key waits for its request before another instance may take it over (a crashed claimer).', 1, 3600)
  const maxAttachments = r.int('TOLLGATE_MAX_ATTACHMENTS', 16, 'attachments', 'Most attachments (files and inline images, in any API format) in one AI request; more get 400.', 0, 1000)
  const maxAttachmentBytes = r.int('TOLLGATE_MAX_ATTACHMENT_BYTES', 5 * 1024 * 1024, 'bytes', 'Largest decoded attachment (computed from its base64 length, before decoding); larger ones get 400.', 1024, 100 * 1024 * 1024)
  const maxAttachmentsTotalBytes = r.int('TOLLGATE_MAX_ATTACHMENTS_TOTAL_BYTES', 8 * 1024 * 1024, 'bytes', 'Largest decoded size of all attachments of one AI request together; more gets 400.', 1024, 100 * 1024 * 1024)

  const classifierWorkers = r.int('TOLLGATE_CLASSIFIER_WORKERS', 1, 'threads', 'Worker threads running the embedded classifier model (each holds the model: ~200 MB).', 1, 16)
  const classifierModel = r.oneOf('TOLLGATE_CLASSIFIER_MODEL', 'as_needed', ['always', 'as_needed'] as const,
    'as_needed: the embedding model runs only when the active policy matches on domain, intent, image labels or low-severity safety hints (the rules and PII detectors always run; records of other requests carry no domain); always: every request runs it, for domain and intent on every decision record (GW-3), at ~10x the CPU per request.')
  const llmMode = r.oneOf('TOLLGATE_CLASSIFIER_LLM', 'low_margin', ['off', 'low_margin', 'always'] as const,
    'With production ANTHROPIC_API_KEY/GEMINI_API_KEY set: escalate uncertain prompts (low_margin) or every prompt (always) to the LLM classifier, PII redacted locally first; off keeps classification offline.')
  const classifierAnthropicModel = r.string('TOLLGATE_CLASSIFIER_ANTHROPIC_MODEL', 'claude-haiku-4-5', 'Anthropic model used to classify text.')
  const classifierGeminiModel = r.string('TOLLGATE_CLASSIFIER_GEMINI_MODEL', 'gemini-2.5-flash-lite', 'Gemini model used to label images.')
  const classifierTimeoutMs = r.int('TOLLGATE_CLASSIFIER_TIMEOUT_MS', 2500, 'ms', 'Longest wait for the LLM classifier before the embedded result stands.', 100, 60000)
  const challengeTtlS = r.int('TOLLGATE_CHALLENGE_TTL_S', 300, 'seconds', 'How long a challenged request is held in memory for its reply (GW-5, TRANSIT-2: at most 5 minutes).', 10, 300)
  const challengeAttempts = r.int('TOLLGATE_CHALLENGE_ATTEMPTS', 3, 'attempts', 'Replies allowed per challenge before its request is dropped.', 1, 10)
  const maxHolds = r.int('TOLLGATE_CHALLENGE_MAX_HOLDS', 10000, 'requests', 'Most challenged requests held in memory at once (the oldest is dropped beyond it).', 1, 1000000)
  const challengeLlm = r.oneOf('TOLLGATE_CHALLENGE_LLM', 'off', ['off', 'on'] as const, 'on: challenge questions are written by the LLM from the domain and intent only, and replies graded by its rubric, PII-redacted first (needs ANTHROPIC_API_KEY; falls back per call). off: templates and the offline heuristic.')
  const auditKeyFile = resolve(dataDir, r.string('TOLLGATE_AUDIT_SIGNING_KEY', 'audit-signing-key.pem', 'Ed25519 private key (PEM file) that signs audit checkpoints (AUDIT-3, D9); relative to the data dir; created (0600) on first start when missing. Keep it off the database host where you can.'))
  const checkpointEvents = r.int('TOLLGATE_AUDIT_CHECKPOINT_EVENTS', 1000, 'entries', 'A signed checkpoint at least every this many entries of an org\'s audit chain.', 1, 1000)
  const checkpointS = r.int('TOLLGATE_AUDIT_CHECKPOINT_S', 300, 'seconds', 'A signed checkpoint of every chain at least this often, empty when the chain was idle.', 1, 300)
  const alertBlocks = r.int('TOLLGATE_ALERT_BLOCKS_PER_5MIN', 50, 'requests', "An org's webhook gets an alert when this many of its requests are blocked (input or output) within 5 minutes; 0 turns it off.", 0, 1_000_000)
  const alertSignin = r.int('TOLLGATE_ALERT_SIGNIN_FAILURES_PER_5MIN', 20, 'attempts', "An org's webhook gets an alert when this many sign-ins to it fail within 5 minutes; 0 turns it off.", 0, 1_000_000)
  const alertRateLimited = r.int('TOLLGATE_ALERT_RATE_LIMITED_PER_5MIN', 100, 'requests', "An org's webhook gets an alert when this many of its AI requests are answered 429 within 5 minutes; 0 turns it off.", 0, 1_000_000)
  const alertTimeoutMs = r.int('TOLLGATE_ALERT_WEBHOOK_TIMEOUT_MS', 3000, 'ms', 'Longest wait for an alert webhook to answer; redirects are never followed.', 100, 30_000)
  const alertPrivate = r.oneOf('TOLLGATE_ALERT_WEBHOOK_PRIVATE', 'deny', ['deny', 'allow'] as const, 'Whether an https alert webhook may reach private, loopback or link-local addresses (deny: it connects only to public addresses — an org admin cannot aim it at this host\'s network).')

  // BACKUP-1, D12: the backup key is its own key, never the master key (rotating the master key
  // must not strand old backups: CRYPTO-2), and never inside a backup.
  const backupKey = r.secret('TOLLGATE_BACKUP_KEY', 'AES-256-GCM key of the backups: 64 hex characters, not the master key. In development an unset key is generated into the data dir; in production backups need it.', (v) =>
    /^[0-9a-fA-F]{64}$/.test(v) ? undefined : 'must be 64 hex characters — generate one with: openssl rand -hex 32')
  if (backupKey && masterKey && backupKey.reveal().toLowerCase() === masterKey.reveal().toLowerCase()) r.problems.push('TOLLGATE_BACKUP_KEY must not be the master key: generate a separate one with: openssl rand -hex 32')
  const backupDir = resolve(dataDir, r.string('TOLLGATE_BACKUP_DIR', 'backups', 'Folder that receives backups when no bucket is set; relative to the data dir.'))
  const backupRetentionDays = r.int('TOLLGATE_BACKUP_RETENTION_DAYS', 30, 'days', 'Each backup run deletes the backups older than this in its destination (none when the run failed).', 1, 3650)
  const backupCron = r.optional('TOLLGATE_BACKUP_CRON', 'When the server takes backups: 5-field cron in UTC, e.g. "0 3 * * *"; unset: only tollgate backup and POST /ops/backup.', (v) => {
    const c = parseCron(v)
    return typeof c === 'string' ? c : undefined
  })
  if (mode === 'production' && backupCron && !backupKey) r.problems.push('TOLLGATE_BACKUP_CRON needs TOLLGATE_BACKUP_KEY in production mode — generate one with: openssl rand -hex 32')
  const s3Bucket = r.optional('TOLLGATE_BACKUP_S3_BUCKET', 'S3-compatible bucket that receives backups instead of the folder (AWS S3, Cloudflare R2, MinIO).')
  const s3Prefix = r.string('TOLLGATE_BACKUP_S3_PREFIX', 'tollgate/', 'Prefix of the backup object keys in the bucket.')
  const s3Region = r.string('TOLLGATE_BACKUP_S3_REGION', 'us-east-1', 'Region of the bucket (R2: auto).')
  const s3Endpoint = r.optional('TOLLGATE_BACKUP_S3_ENDPOINT', 'Endpoint URL of an S3-compatible service (R2, MinIO); path-style addressing is used with it. Unset: AWS S3.', httpUrl)
  const s3AccessKeyId = r.optional('TOLLGATE_BACKUP_S3_ACCESS_KEY_ID', 'Access key id for the bucket; unset uses the AWS SDK default credential chain (environment, instance role).')
  const s3Secret = r.secret('TOLLGATE_BACKUP_S3_SECRET_ACCESS_KEY', 'Secret access key for TOLLGATE_BACKUP_S3_ACCESS_KEY_ID.')
  if ((s3AccessKeyId === undefined) !== (s3Secret === undefined)) r.problems.push('TOLLGATE_BACKUP_S3_ACCESS_KEY_ID and TOLLGATE_BACKUP_S3_SECRET_ACCESS_KEY must be set together (or neither).')
  const orgPurgeDelayS = r.int('TOLLGATE_ORG_PURGE_DELAY_S', 2592000, 'seconds', 'How long after termination a terminated org\'s data is deleted (RIGHTS-2: at most 30 days; 0 = at the next retention run).', 0, 2592000)
  const retentionJobS = r.int('TOLLGATE_RETENTION_JOB_S', 3600, 'seconds', 'How often the retention job deletes terminated orgs whose purge delay has passed.', 60, 86400)
  const artifactJobS = r.int('TOLLGATE_ARTIFACT_PURGE_S', 600, 'seconds', 'How often the job deletes temporary artifacts past their 24 h expiry and reports reaching 30 days (RIGHTS-3, GW-8: at most 1 h).', 60, 3600)

  // TRUST-1: security.txt (RFC 9116). Contact and Expires are required fields, and Expires says when
  // the operator last vouched for the file: a date computed from the start time would renew itself
  // on every restart and never go stale, so there is no default — it is set by a person, and the
  // trust page warns 30 days before it passes.
  const contacts = r.list('TOLLGATE_SECURITY_CONTACT', '', 'Security contacts for /.well-known/security.txt (RFC 9116), mailto: or https: URIs, most preferred first; unset answers 404 there and the trust page warns.')
  if (contacts.some((c) => !securityContact(c))) r.problems.push('TOLLGATE_SECURITY_CONTACT entries must be mailto:someone@example.com or https:// URIs (no spaces, no credentials).')
  const expiresRaw = r.optional('TOLLGATE_SECURITY_EXPIRES', 'When security.txt goes stale: an ISO date (2026-12-31) or RFC 3339 time, at most a year ahead by RFC 9116; required with TOLLGATE_SECURITY_CONTACT, never computed.')
  const expiresAt = expiresRaw === undefined ? undefined : isoInstant(expiresRaw)
  if (expiresRaw !== undefined && expiresAt === undefined) r.problems.push('TOLLGATE_SECURITY_EXPIRES must be an ISO date such as 2026-12-31 or an RFC 3339 time such as 2026-12-31T00:00:00Z.')
  if (contacts.length > 0 && expiresRaw === undefined) r.problems.push("TOLLGATE_SECURITY_EXPIRES is required with TOLLGATE_SECURITY_CONTACT (RFC 9116): set the date you will next review security.txt, e.g. $(date -u -d '+1 year' +%F).")
  const policyUrl = r.optional('TOLLGATE_SECURITY_POLICY_URL', 'https:// URL of your vulnerability disclosure policy, listed as Policy in security.txt.', (v) =>
    httpUrl(v) ?? (v.startsWith('https://') && /^\S+$/.test(v) ? undefined : 'must be an https:// URL (RFC 9116).'))
  const languages = r.list('TOLLGATE_SECURITY_LANGUAGES', 'en', 'Languages your security team reads (RFC 5646 tags), listed as Preferred-Languages in security.txt.')
  if (languages.some((l) => !/^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$/.test(l))) r.problems.push('TOLLGATE_SECURITY_LANGUAGES entries must be language tags such as en, de, pt-BR.')

  if (r.problems.length > 0) return { ok: false, problems: r.problems, docs: r.docs }
  const config: Config = {
    mode,
    server: {
      host, port, publicUrl,
      tls: certPath && keyPath ? { certPath: resolve(cwd, certPath), keyPath: resolve(cwd, keyPath) } : undefined,
      hstsMaxAgeS, bodyLimitBytes, maxHeaderBytes, headersTimeoutMs, requestTimeoutMs, maxConnections: serverConnections, jsonMaxDepth, shutdownTimeoutMs, heapGrowthPercent, environments,
    },
    storage: { dataDir, databaseUrl },
    cache: { redisUrl },
    log: { level },
    masterKey,
    previousMasterKeys,
    keyVaultDir,
    keyVaultKms,
    providers: { upstreams, routes, models, timeoutMs, idleTimeoutMs, maxConnections },
    decisions: { batchMax },
    identity: {
      google: googleClientId ? { issuer: googleIssuer.replace(/\/+$/, ''), clientId: googleClientId, clientSecret: googleClientSecret, allowedDomains: googleDomains.map((d) => d.toLowerCase()) } : undefined,
      stepUpWindowS, sessionMaxAgeS, ssoSessionMaxAgeS, ssoSessionIdleS, sessionRotateS, bootstrapOrg, bootstrapEmail,
    },
    mail: { smtpUrl, from: mailFrom },
    ops: { secret: opsSecret },
    limits: { authPerMin, interceptPerMin, apiPerMin, trustedProxies, idempotencyTtlS, idempotencyLockS, maxAttachments, maxAttachmentBytes, maxAttachmentsTotalBytes },
    classify: { workers: classifierWorkers, model: classifierModel, llmMode, anthropicModel: classifierAnthropicModel, geminiModel: classifierGeminiModel, timeoutMs: classifierTimeoutMs },
    challenge: { ttlS: challengeTtlS, attempts: challengeAttempts, maxHolds, llm: challengeLlm === 'on' },
    audit: { signingKeyFile: auditKeyFile, checkpointEvents, checkpointS },
    alerts: { blocksPer5Min: alertBlocks, signinFailuresPer5Min: alertSignin, rateLimitedPer5Min: alertRateLimited, webhookTimeoutMs: alertTimeoutMs, webhookPrivate: alertPrivate },
    backup: {
      key: backupKey, dir: backupDir, retentionDays: backupRetentionDays, cron: backupCron,
      s3: s3Bucket ? { bucket: s3Bucket, prefix: s3Prefix, region: s3Region, endpoint: s3Endpoint, accessKeyId: s3AccessKeyId, secretAccessKey: s3Secret } : undefined,
    },
    retention: { orgPurgeDelayS, jobS: retentionJobS, artifactJobS },
    security: { contacts, expiresAt, policyUrl, languages },
  }
  return { ok: true, config: deepFreeze(config), docs: r.docs }
}

/** A security.txt contact: a mailto: address or an https:// URL, with nothing that could break the line. */
function securityContact(v: string): boolean {
  if (!/^[\x21-\x7e]+$/.test(v)) return false
  if (v.startsWith('mailto:')) return /^mailto:[^@\s]+@[^@\s]+\.[^@\s]+$/.test(v)
  return v.startsWith('https://') && httpUrl(v) === undefined
}

/** An ISO date (midnight UTC) or an RFC 3339 date-time with a zone, as epoch milliseconds. */
function isoInstant(v: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2}))?$/.exec(v)
  if (!m) return undefined
  const [, y, mo, d, h, mi, sec] = m
  // Reject dates the Date parser would roll over (2026-02-30 → March 2).
  const day = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)))
  if (day.getUTCFullYear() !== Number(y) || day.getUTCMonth() !== Number(mo) - 1 || day.getUTCDate() !== Number(d)) return undefined
  if (h === undefined) return day.getTime()
  if (Number(h) > 23 || Number(mi) > 59 || Number(sec) > 59) return undefined
  const t = Date.parse(v.toUpperCase())
  return Number.isFinite(t) ? t : undefined
}

function tlsOrLocal(url: string, usesTls: (u: URL) => boolean): boolean {
  try {
    const u = new URL(url)
    return isLoopbackHost(u.hostname) || u.hostname === '' || u.searchParams.has('host') || usesTls(u)
  } catch {
    return false
  }
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o)
    for (const v of Object.values(o)) deepFreeze(v)
  }
  return o
}

/** Every documented setting, for the README check and `tollgate config`. */
export function settingDocs(): SettingDoc[] {
  return loadConfig({}).docs
}
