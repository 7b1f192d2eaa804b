import type { Generated } from 'kysely'

/**
 * Row types of every table. Timestamps (`*_at`) are integer ms since the epoch; flags are 0/1.
 * What is never here: prompt or output text, attachment bytes or names, raw IPs, raw secrets.
 * The schema test (TRANSIT-3, DATA-1) classifies every column and fails on an unclassified one.
 */
export interface OrgTable {
  id: string
  slug: string
  created_at: number
  terminated_at: number | null
}

/** A per-org key (e.g. the prompt-fingerprint HMAC key), AES-256-GCM-wrapped under the master key. */
export interface OrgKeyTable {
  id: string
  org_id: string
  purpose: string
  wrapped: string
  master_key_id: string
  /**
   * 1: `wrapped` holds the key sealed under the org's KEK in the key vault, then wrapped under the
   * master key (D13); 0: wrapped under the master key only. On a destroyed row, 1 means the KEK's
   * deletion is still pending (OrgKeyring.shred).
   */
  vault: number
  created_at: number
  destroyed_at: number | null
}

export interface ApiKeyTable {
  /** The public id embedded in the key, used for lookup. */
  id: string
  org_id: string
  environment: string
  user_id: string | null
  label: string | null
  /** `gateway` (AI endpoints) or `admin` (the admin API, acting as user_id). */
  scope: string
  /** SHA-256 of the whole key, hex. The key itself is shown once and never stored. */
  secret_hash: string
  created_at: number
  /** Set on the old key by a rotation: it keeps working until then (grace period). */
  expires_at: number | null
  revoked_at: number | null
  last_used_at: number | null
  replaced_by: string | null
  created_by_type: string
  created_by: string | null
}

/** The decision record (TRANSIT-3): the only thing persisted about an AI request. */
export interface DecisionTable {
  id: string
  org_id: string
  environment: string
  key_id: string | null
  /** HMAC under the org key of the principal id: pseudonymous (DATA-2). */
  actor_id: string | null
  request_id: string
  endpoint: string
  /** A catalog model name, or `other`: the client's raw model string is never stored. */
  model: string | null
  provider: string | null
  outcome: string
  status: number
  error_code: string | null
  stream: number
  input_tokens: number | null
  output_tokens: number | null
  attachment_count: number
  /** Comma-separated MIME types from the accepted allowlist only. */
  attachment_types: string | null
  /** HMAC-SHA-256 of the prompt under the org's fingerprint key (D1), base64url. */
  prompt_fingerprint: string | null
  domain: string | null
  intent: string | null
  friction: string | null
  passed: number | null
  reasoning_score: number | null
  rule_id: string | null
  /** The reason code the stop was answered with (a policy rule's validated label), if any. */
  reason: string | null
  /** The key member's team when the request was decided (a cohort id), or null. */
  cohort: string | null
  finding_codes: string | null
  classifier: string | null
  classify_ms: number | null
  policy_ms: number | null
  auth_ms: number | null
  upstream_ms: number | null
  total_ms: number
  created_at: number
  completed_at: number
}

/** Append-only, hash-chained audit log; one chain per org plus the `instance` chain. */
export interface AuditEventTable {
  chain_id: string
  seq: number
  at: number
  actor_type: string
  actor_id: string | null
  action: string
  target_type: string | null
  target_id: string | null
  outcome: string
  request_id: string | null
  prev_hash: string
  hash: string
}

/** A signed audit checkpoint (AUDIT-3, D9): the head of one chain, signed outside the database. */
export interface AuditCheckpointTable {
  id: string
  chain_id: string
  seq: number
  head_hash: string
  at: number
  key_id: string
  signature: string
}

/** A claimed backup cron slot (BACKUP-1): the primary key is the lease among instances. */
export interface BackupSlotTable {
  slot_at: number
  claimed_at: number
}

/** An org's anomaly-alert webhook (AUDIT-4): `{url, secret}` sealed under the org's data key. */
export interface AlertWebhookTable {
  org_id: string
  config_sealed: string
  created_at: number
  updated_at: number
}

/** One anomaly alert claimed for sending (AUDIT-4): the key (org, kind, window) dedupes across instances. */
export interface AlertSentTable {
  org_id: string
  kind: string
  window_start: number
  count: number
  threshold: number
  outcome: string
  sent_at: number
}

/**
 * An output a person explicitly saved to the workspace (RIGHTS-3, migration 0011): `{content,
 * title}` sealed under the org's data key, bound to the org and row id; readable only by its owner.
 */
export interface ArtifactTable {
  id: string
  org_id: string
  /** The owner's pseudonym in the org (D13). */
  owner_id: string
  sealed: string
  /** UTF-8 bytes of the content. */
  size_bytes: number
  temporary: number
  created_at: number
  /** Temporary artifacts: created_at + 24 h; null for kept ones. */
  expires_at: number | null
}

/**
 * A report of harmful output (GW-8, migration 0011): only what the reporter submitted, sealed under
 * the org's data key; deleted at review, withdrawal, or 30 days after submission.
 */
export interface HarmReportTable {
  id: string
  org_id: string
  /** The reporter's pseudonym in the org (D13), never their email. */
  reporter_id: string
  /** An MLCommons hazard code (S1–S14). */
  category: string
  /** The `x-tollgate-decision` id the reporter gave, if any (format-checked only). */
  decision_id: string | null
  sealed: string
  size_bytes: number
  created_at: number
}

export interface DB {
  org: OrgTable
  org_key: OrgKeyTable
  api_key: ApiKeyTable
  decision: DecisionTable
  audit_event: AuditEventTable
  audit_checkpoint: AuditCheckpointTable
  alert_webhook: AlertWebhookTable
  alert_sent: AlertSentTable
  backup_slot: BackupSlotTable
  artifact: ArtifactTable
  harm_report: HarmReportTable
  user: UserTable
  user_identity: UserIdentityTable
  membership: MembershipTable
  session: SessionTable
  passkey: PasskeyTable
  invite: InviteTable
  sso_config: SsoConfigTable
  login_link: LoginLinkTable
  instance_key: InstanceKeyTable
  rate_tier: RateTierTable
  idempotency: IdempotencyTable
}

export type Row<T extends keyof DB> = DB[T]
export type { Generated }

export interface UserTable {
  id: string
  /** The one piece of PII stored about a person (DATA-1). Never a lookup key for sign-in (D3). */
  email: string
  created_at: number
  disabled_at: number | null
}

export interface UserIdentityTable {
  /** HMAC(instance key, issuer ‖ sub), base64url: pseudonymous (D3). */
  subject_hash: string
  user_id: string
  provider: string
  org_id: string | null
  created_at: number
}

export interface MembershipTable {
  org_id: string
  user_id: string
  role: string
  /** The member's team: a cohort id (policy COHORT pattern) or null. */
  team: string | null
  created_at: number
}

export interface SessionTable {
  id: string
  user_id: string
  /** SHA-256 of the 256-bit session token, hex (AUTH-3). */
  token_hash: string
  prev_token_hash: string | null
  prev_valid_until: number | null
  kind: string
  org_id: string | null
  created_at: number
  absolute_expires_at: number
  idle_timeout_ms: number | null
  last_seen_at: number
  auth_at: number
  rotated_at: number
  rotate_after: number | null
  ended_at: number | null
  end_reason: string | null
}

export interface PasskeyTable {
  /** The WebAuthn credential id, base64url. */
  id: string
  user_id: string
  /** COSE public key, base64url (public material only). */
  public_key: string
  counter: number
  transports: string | null
  backed_up: number
  created_at: number
  last_used_at: number | null
}

export interface InviteTable {
  id: string
  org_id: string
  /** The invitee's email until the invite is accepted, revoked or expired (then purged). */
  email: string
  role: string
  token_hash: string
  created_by: string | null
  created_at: number
  expires_at: number
  accepted_at: number | null
  revoked_at: number | null
}

export interface SsoConfigTable {
  org_id: string
  issuer: string
  client_id: string
  /** The IdP client secret, AES-256-GCM under a key derived for this org. */
  client_secret_sealed: string | null
  /** Comma-separated email domains allowed to sign in (and `hd` for Google Workspace). */
  allowed_domains: string
  updated_at: number
}

export interface LoginLinkTable {
  token_hash: string
  user_id: string
  created_at: number
  expires_at: number
  used_at: number | null
}

export interface InstanceKeyTable {
  purpose: string
  wrapped: string
  master_key_id: string
  created_at: number
}

export interface RateTierTable {
  org_id: string
  /** `intercept` or `api` (the `auth` group is per address, before any org is known). */
  endpoint_group: string
  per_minute: number
  updated_at: number
}

export interface IdempotencyTable {
  org_id: string
  /** The credential: an API key id, or a user id for session-authenticated calls. */
  credential_id: string
  /** HMAC of the Idempotency-Key value under the org key. */
  key_hash: string
  method: string
  /** The route pattern, e.g. /api/orgs/:org/keys. */
  route: string
  /** HMAC of the canonical JSON request under the org key. */
  fingerprint: string
  state: string
  lock_until: number
  status: number | null
  /** Admin API responses only, AES-256-GCM under the org's data key; a key secret is never kept. */
  response_sealed: string | null
  /** AI endpoints: the decision record answered on replay (never the output). */
  decision_id: string | null
  /** Admin API: the audited target (`type:id`) of the effect, written in the effect's own transaction. */
  effect: string | null
  created_at: number
  expires_at: number
}
