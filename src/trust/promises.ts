import type { LiveSetting, TrustInstance } from './instance.ts'

/**
 * The promises Tollgate makes, one short sentence each in this project's own words, with what
 * governs each one on a running instance. `kept` means the code keeps it and a test named after
 * the ID proves it (test/trust checks that such a test exists); `partial` and `planned` say what
 * is still missing instead of claiming it.
 */
export type PromiseStatus = 'kept' | 'partial' | 'planned'

/** The instance-wide self-checks a promise can depend on (see report.ts). */
export type CheckId = 'database' | 'cache' | 'migrations' | 'master_key' | 'classifier' | 'transport' | 'security_txt'

export interface TrustPromise {
  readonly id: string
  readonly area: string
  readonly text: string
  readonly status: PromiseStatus
  /** For `partial` and `planned`: what is not there yet. */
  readonly missing?: string
  readonly settings: (i: TrustInstance) => LiveSetting[]
  readonly checks: readonly CheckId[]
}

const s = (setting: string, value: LiveSetting['value'], unit?: string): LiveSetting => (unit ? { setting, value, unit } : { setting, value })
const configured = (on: boolean) => (on ? 'configured' : 'not configured')
const none = (): LiveSetting[] => []

/** D13: how far destroying an org's keys reaches on this instance. */
const keyVault = (i: TrustInstance) => s('key vault', i.keyVault
  ? `${i.keyVault === 'file' ? 'TOLLGATE_KEY_VAULT_DIR' : 'AWS KMS'}: destroying an org’s keys also makes its data in older backups unreadable`
  : 'not configured: destroying an org’s keys reaches the live database only; backups taken before stay readable until they age out')

const sessions = (i: TrustInstance) => [
  s('TOLLGATE_SESSION_MAX_AGE_S', i.identity.sessionMaxAgeS, 'seconds'),
  s('TOLLGATE_SESSION_ROTATE_S', i.identity.sessionRotateS, 'seconds'),
]

export const PROMISES: readonly TrustPromise[] = [
  // Gateway
  { id: 'GW-1', area: 'Gateway', status: 'kept', checks: [],
    text: 'The Anthropic and OpenAI SDKs work unchanged against Tollgate, as does its own /v1/intercept, with plain JSON or streamed answers.',
    settings: (i) => [s('TOLLGATE_ENVIRONMENTS', i.environments)] },
  { id: 'GW-2', area: 'Gateway', status: 'kept', checks: [],
    text: 'Provider credentials stay on the server; clients hold only Tollgate keys, and upstream failures become stable codes without the provider’s own error text.',
    settings: (i) => Object.entries(i.providers).map(([env, list]) => s(`providers (${env})`, list.length > 0 ? list : ['local provider only'])) },
  { id: 'GW-3', area: 'Gateway', status: 'kept', checks: ['classifier'],
    text: 'Each request is labelled in memory with a domain and an intent by a classifier that runs offline, optionally helped by an LLM classifier when keys are present.',
    settings: (i) => [s('TOLLGATE_CLASSIFIER_MODEL', i.classifier.model), s('TOLLGATE_CLASSIFIER_LLM', i.classifier.llm), s('LLM classifier in use', i.classifier.llmActive)] },
  { id: 'GW-4', area: 'Gateway', status: 'kept', checks: ['database'],
    text: 'A versioned per-org policy turns those labels and findings into allow, redact, challenge or block, with an explicit failure mode per rule, shadow rules, and a sandbox stage before production.',
    settings: (i) => [s('TOLLGATE_ENVIRONMENTS', i.environments)] },
  { id: 'GW-5', area: 'Gateway', status: 'kept', checks: [],
    text: 'A challenged request waits in memory, for a bounded time, while the person explains their reasoning; the reply is graded and only a pass lets the request through.',
    settings: (i) => [s('TOLLGATE_CHALLENGE_TTL_S', i.challenge.ttlS, 'seconds'), s('TOLLGATE_CHALLENGE_ATTEMPTS', i.challenge.attempts), s('TOLLGATE_CHALLENGE_MAX_HOLDS', i.challenge.maxHolds)] },
  { id: 'GW-6', area: 'Gateway', status: 'kept', checks: [],
    text: 'Prompts and model outputs are screened against safety categories, with thresholds and actions each org can set.',
    settings: none },
  { id: 'GW-7', area: 'Gateway', status: 'kept', checks: [],
    text: 'Personal and health data in prompts and text attachments is detected, and the policy decides whether to block it, redact it before forwarding, or let it pass.',
    settings: none },
  { id: 'GW-8', area: 'Gateway', status: 'kept', checks: ['database', 'master_key'],
    text: 'People can report an output for an admin to review: only what they chose to send is kept, encrypted with the org’s key, and deleted at review or after 30 days at the latest.',
    settings: () => [s('unreviewed reports deleted after', 'at most 30', 'days'), s('reviewed reports deleted', 'at review')] },

  // Transit-only
  { id: 'TRANSIT-1', area: 'Transit-only', status: 'kept', checks: [],
    text: 'Prompts, attachments and answers are handled in memory and never written to disk, logs or the cache — a canary test searches every byte written for planted markers.',
    settings: () => [s('process flags that dump memory', 'refused at start-up')] },
  { id: 'TRANSIT-2', area: 'Transit-only', status: 'kept', checks: [],
    text: 'Request text is dropped when the request ends, or when its challenge expires.',
    settings: (i) => [s('TOLLGATE_CHALLENGE_TTL_S', i.challenge.ttlS, 'seconds')] },
  { id: 'TRANSIT-3', area: 'Transit-only', status: 'kept', checks: ['database', 'migrations'],
    text: 'The only trace of an AI request is a small decision record of labels, codes, counts and timings.',
    settings: (i) => [s('storage', i.storage), s('TOLLGATE_DECISION_BATCH_MAX', i.decisionBatchMax)] },
  { id: 'TRANSIT-4', area: 'Transit-only', status: 'kept', checks: ['master_key'],
    text: 'Logs carry no prompt text; where a prompt must be recognised, a keyed per-org hash stands in for it.',
    settings: none },
  { id: 'TRANSIT-5', area: 'Transit-only', status: 'kept', checks: [],
    text: 'Problems are debugged from timings, request ids and rule codes; there is no response cache, no prompt log and no switch to log bodies.',
    settings: none },
  { id: 'DATA-1', area: 'Transit-only', status: 'kept', checks: ['migrations'],
    text: 'An email address is the only personal detail stored about a person.',
    settings: none },
  { id: 'DATA-2', area: 'Transit-only', status: 'kept', checks: ['master_key'],
    text: 'Decision records name people by a pseudonym, not by their email.',
    settings: none },
  { id: 'DATA-3', area: 'Transit-only', status: 'kept', checks: [],
    text: 'Every query is confined to the caller’s org; nothing reads or changes another org’s data.',
    settings: none },
  { id: 'DATA-4', area: 'Transit-only', status: 'kept', checks: [],
    text: 'Customer content is never used for training; an org can only record an explicit opt-in, off by default and audited.',
    settings: none },

  // Identity
  { id: 'AUTH-1', area: 'Identity', status: 'kept', checks: [],
    text: 'People can sign in with Google through OpenID Connect with PKCE; no password is ever stored.',
    settings: (i) => [s('Google sign-in', configured(i.identity.googleSignIn))] },
  { id: 'AUTH-2', area: 'Identity', status: 'kept', checks: [],
    text: 'Each org can send its people through its own OpenID Connect identity provider (SAML is not offered).',
    settings: none },
  { id: 'AUTH-3', area: 'Identity', status: 'kept', checks: ['database'],
    text: 'Session tokens are long random opaque values kept only as hashes and compared in constant time.',
    settings: sessions },
  { id: 'AUTH-4', area: 'Identity', status: 'kept', checks: [],
    text: 'Org single-sign-on sessions end after a fixed maximum and after an idle period.',
    settings: (i) => [s('TOLLGATE_SSO_SESSION_MAX_AGE_S', i.identity.ssoSessionMaxAgeS, 'seconds'), s('TOLLGATE_SSO_SESSION_IDLE_S', i.identity.ssoSessionIdleS, 'seconds')] },
  { id: 'AUTH-5', area: 'Identity', status: 'kept', checks: ['transport'],
    text: 'Session cookies are host-only, HttpOnly, Secure and SameSite, rotate regularly and on privilege changes, and cookie requests are guarded against CSRF.',
    settings: (i) => [s('TOLLGATE_SESSION_ROTATE_S', i.identity.sessionRotateS, 'seconds')] },
  { id: 'AUTH-6', area: 'Identity', status: 'kept', checks: [],
    text: 'Sensitive operations need a recent passkey or identity-provider sign-in.',
    settings: (i) => [s('TOLLGATE_STEP_UP_WINDOW_S', i.identity.stepUpWindowS, 'seconds')] },
  { id: 'AUTH-7', area: 'Identity', status: 'kept', checks: [],
    text: 'A fresh install gets its first owner through a one-time sign-in link that expires after 15 minutes.',
    settings: none },

  // Keys
  { id: 'KEY-1', area: 'Keys', status: 'kept', checks: ['database'],
    text: 'API keys carry 192 random bits, are shown once, are stored only as hashes and never reach a log.',
    settings: none },
  { id: 'KEY-2', area: 'Keys', status: 'kept', checks: [],
    text: 'A key belongs to one org and one environment, its prefix says which, and sandbox keys never reach production providers or data.',
    settings: (i) => [s('TOLLGATE_ENVIRONMENTS', i.environments)] },
  { id: 'KEY-3', area: 'Keys', status: 'kept', checks: ['database'],
    text: 'Keys rotate with a grace period and no failed requests, and a revoked key stops working everywhere at once.',
    settings: none },
  { id: 'KEY-4', area: 'Keys', status: 'kept', checks: [],
    text: 'Operator endpoints need their own secret header, checked in constant time, and are switched off without one.',
    settings: (i) => [s('TOLLGATE_OPS_SECRET', configured(i.opsSecret))] },

  // Authorization
  { id: 'RBAC-1', area: 'Authorization', status: 'kept', checks: [],
    text: 'Each org has owners, admins, analysts and members, and every endpoint names the permission it needs.',
    settings: none },
  { id: 'RBAC-2', area: 'Authorization', status: 'kept', checks: [],
    text: 'Teams are managed through single-use expiring invites, role changes and removals, and the last owner cannot be removed.',
    settings: (i) => [s('mail transport', i.mail === 'smtp' ? 'SMTP' : 'server log (development)')] },
  { id: 'RBAC-3', area: 'Authorization', status: 'kept', checks: ['database'],
    text: 'Admins and analysts see only group figures over fixed cohorts covering at least five people — "<5" below that — suppressed together so that no combination of them singles anyone out; never one person’s activity.',
    settings: () => [s('minimum people per figure (k)', 5)] },

  // Abuse controls
  { id: 'LIMIT-1', area: 'Abuse controls', status: 'kept', checks: ['cache'],
    text: 'Sign-in, AI and admin calls are rate-limited per principal and per address, with standard headers, exactly across instances sharing Redis.',
    settings: (i) => [s('TOLLGATE_LIMIT_AUTH_PER_MIN', i.limits.authPerMin, 'requests per 60 s'), s('TOLLGATE_LIMIT_INTERCEPT_PER_MIN', i.limits.interceptPerMin, 'requests per 60 s'),
      s('TOLLGATE_LIMIT_API_PER_MIN', i.limits.apiPerMin, 'requests per 60 s'), s('cache', i.cache)] },
  { id: 'LIMIT-2', area: 'Abuse controls', status: 'kept', checks: ['database'],
    text: 'A retried POST or PATCH with the same Idempotency-Key gets the first outcome; AI replays return the recorded decision and never call the provider again.',
    settings: (i) => [s('TOLLGATE_IDEMPOTENCY_TTL_S', i.limits.idempotencyTtlS, 'seconds'), s('TOLLGATE_IDEMPOTENCY_LOCK_S', i.limits.idempotencyLockS, 'seconds')] },
  { id: 'LIMIT-3', area: 'Abuse controls', status: 'kept', checks: [],
    text: 'Connections, bodies, headers, nesting and attachments are capped and every input is validated; bad input gets a clear 4xx and changes nothing.',
    settings: (i) => [s('TOLLGATE_BODY_LIMIT_BYTES', i.limits.bodyLimitBytes, 'bytes'), s('TOLLGATE_MAX_HEADER_BYTES', i.limits.maxHeaderBytes, 'bytes'),
      s('TOLLGATE_HEADERS_TIMEOUT_MS', i.limits.headersTimeoutMs, 'ms'), s('TOLLGATE_REQUEST_TIMEOUT_MS', i.limits.requestTimeoutMs, 'ms'),
      s('TOLLGATE_MAX_CONNECTIONS', i.limits.maxConnections), s('TOLLGATE_JSON_MAX_DEPTH', i.limits.jsonMaxDepth),
      s('TOLLGATE_MAX_ATTACHMENTS', i.limits.maxAttachments), s('TOLLGATE_MAX_ATTACHMENT_BYTES', i.limits.maxAttachmentBytes, 'bytes'),
      s('TOLLGATE_MAX_ATTACHMENTS_TOTAL_BYTES', i.limits.maxAttachmentsTotalBytes, 'bytes')] },

  // Audit
  { id: 'AUDIT-1', area: 'Audit', status: 'kept', checks: ['database'],
    text: 'Team, key, configuration, policy, sign-in and operator actions, and refused access, are written to an append-only audit log.',
    settings: none },
  { id: 'AUDIT-2', area: 'Audit', status: 'kept', checks: ['database'],
    text: 'Every policy evaluation leaves a decision record with who asked (as a pseudonym), the outcome and the time.',
    settings: none },
  { id: 'AUDIT-3', area: 'Audit', status: 'kept', checks: ['database'],
    text: 'Audit entries are hash-chained per org with chain heads signed by a key kept outside the database, so an offline verify names any edit, removal, reorder or rollback.',
    settings: (i) => [s('TOLLGATE_AUDIT_CHECKPOINT_EVENTS', i.audit.checkpointEvents, 'entries'), s('TOLLGATE_AUDIT_CHECKPOINT_S', i.audit.checkpointS, 'seconds')] },
  { id: 'AUDIT-4', area: 'Audit', status: 'kept', checks: ['database'],
    text: 'Admins get usage and decision figures per day, week and month, and signed webhook alerts on spikes of blocked requests, failed sign-ins and rate-limited requests.',
    settings: () => [s('alert window', 5, 'minutes')] },

  // Data rights
  { id: 'RIGHTS-1', area: 'Data rights', status: 'kept', checks: ['database'],
    text: 'A person can download everything stored about them as JSON (after a fresh sign-in), and nothing of anyone else’s.',
    settings: (i) => [s('TOLLGATE_STEP_UP_WINDOW_S', i.identity.stepUpWindowS, 'seconds')] },
  { id: 'RIGHTS-2', area: 'Data rights', status: 'kept', checks: ['database', 'master_key'],
    text: 'A person can delete their account and personal data at once, and an owner can close an org: its keys stop at once, its per-org keys are destroyed, and all its data is gone within 30 days.',
    settings: (i) => [s('org data deleted after termination', 'at most 30', 'days'), keyVault(i)] },
  { id: 'RIGHTS-3', area: 'Data rights', status: 'kept', checks: ['database', 'master_key'],
    text: 'Nothing is stored unless a person chooses to: an org opts in to a workspace, where each person’s saved outputs are encrypted with the org’s own key, readable and deletable one by one only by them, and temporary ones expire after 24 hours.',
    settings: (i) => [s('workspace', 'off unless an OWNER turns it on'), s('temporary artifacts expire after', 24, 'hours'), keyVault(i)] },

  // Encryption and backups
  { id: 'CRYPTO-1', area: 'Encryption and backups', status: 'kept', checks: ['transport'],
    text: 'When Tollgate serves TLS itself it accepts TLS 1.2 or newer, and behind TLS every response carries HSTS.',
    settings: (i) => [s('TLS', i.transport.tls ? 'terminated by Tollgate' : i.transport.publicHttps ? 'at a proxy (https public URL)' : 'off'),
      s('HSTS', i.transport.tls || i.transport.publicHttps ? 'sent' : 'not sent'), s('TOLLGATE_HSTS_MAX_AGE_S', i.transport.hstsMaxAgeS, 'seconds')] },
  { id: 'CRYPTO-2', area: 'Encryption and backups', status: 'kept', checks: ['master_key'],
    text: 'A new master key re-wraps every org key without downtime (`tollgate master-key rewrap`, the old key kept as TOLLGATE_MASTER_KEY_PREVIOUS meanwhile); backups are encrypted under their own key, so old ones stay restorable.',
    settings: (i) => [s('TOLLGATE_MASTER_KEY', i.masterKey === 'setting' ? 'configured' : 'not configured (development key file in the data dir)')] },
  { id: 'BACKUP-1', area: 'Encryption and backups', status: 'kept', checks: [],
    text: 'Consistent snapshots, AES-256-GCM under a backup key kept outside them, go to a folder or an S3-compatible bucket on demand or on a schedule; each run deletes backups past the retention (30 days).',
    settings: (i) => [s('TOLLGATE_OPS_SECRET', configured(i.opsSecret))] },
  { id: 'BACKUP-2', area: 'Encryption and backups', status: 'kept', checks: [],
    text: '`tollgate restore` authenticates a whole backup before applying it and restores the same row counts with every audit chain intact; backups hold no prompt text.',
    settings: none },

  // Trust and operations
  { id: 'TRUST-1', area: 'Trust and operations', status: 'kept', checks: ['security_txt'],
    text: 'This page lists every promise with its live setting and self-check, and /.well-known/security.txt names who to tell about a vulnerability.',
    settings: (i) => [s('TOLLGATE_SECURITY_CONTACT', i.security.contacts.length > 0 ? i.security.contacts : 'not configured'),
      s('TOLLGATE_SECURITY_EXPIRES', i.security.expiresAt === undefined ? 'not configured' : new Date(i.security.expiresAt).toISOString())] },
  { id: 'OPS-1', area: 'Trust and operations', status: 'kept', checks: ['database', 'cache', 'classifier'],
    text: 'Health, readiness and Prometheus endpoints, JSON logs and a graceful shutdown; separate environments run as separate instances.',
    settings: (i) => [s('TOLLGATE_MODE', i.mode), s('storage', i.storage), s('cache', i.cache), s('TOLLGATE_ENVIRONMENTS', i.environments)] },
]
