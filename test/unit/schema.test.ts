// TRANSIT-3 and DATA-1 (security-tests T106): the real migrated schema, introspected on SQLite
// and PostgreSQL, checked column by column against the classification below. A new column
// fails this test until someone decides, here, what it holds.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { sql } from 'kysely'
import { DECISION_COLUMNS } from '../../src/decisions/record.ts'
import { openDatabase, type Dialect } from '../../src/storage/database.ts'
import { migrateToLatest } from '../../src/storage/migrations/index.ts'
import { freshPostgres, needService } from '../helpers/services.ts'

/** What a column holds. Only `email` is personal data (DATA-1); everything else must not be. */
type Kind =
  | 'id' // a random public identifier (primary key or request id)
  | 'fk' // another row's id
  | 'timestamp' // ms since the epoch (or Kysely's migration timestamp)
  | 'enum' // one value from a fixed set chosen by the code (environment, role, outcome, action…)
  | 'code' // a code or comma-separated codes from a fixed table (error codes, finding codes, rule ids, MIME types)
  | 'model-name' // a catalog model name or `other`: never the client's raw string
  | 'count'
  | 'metric' // a duration or a score
  | 'flag' // 0/1
  | 'hash' // SHA-256 of a credential that is only ever compared (KEY-1, AUTH-3)
  | 'hmac' // HMAC under a per-org key (D1): the prompt fingerprint
  | 'pseudonym' // HMAC of a principal (D3, D13, DATA-2): not joinable to a person without the key
  | 'wrapped-key' // AES-256-GCM-wrapped key material
  | 'sealed-secret' // a credential encrypted under an org key
  | 'sealed-content' // text a person explicitly chose to store (RIGHTS-3 artifact, GW-8 report), AES-256-GCM under the org's data key, bound to its row; unreadable once the org key is destroyed
  | 'sealed-response' // an admin API response kept for idempotent replay, encrypted under the org's data key (may hold an email; never content or a key secret)
  | 'public-key' // public material only (WebAuthn COSE key)
  | 'slug' // operator-chosen org handle, [a-z0-9-]
  | 'label' // operator-chosen key label, [A-Za-z0-9 ._-]{1,64}
  | 'org-config' // an org's IdP settings (issuer URL, client id, allowed email domains): about the org, not a person
  | 'migration' // Kysely's own bookkeeping
  | 'email' // PII: a person's email address

const PII_KINDS: ReadonlySet<Kind> = new Set(['email'])

/** Kinds that may appear in the decision record (TRANSIT-3): labels, codes, counts, timings — no text. */
const DECISION_KINDS: ReadonlySet<Kind> = new Set(['id', 'fk', 'timestamp', 'enum', 'code', 'model-name', 'count', 'metric', 'flag', 'hmac', 'pseudonym'])

/**
 * Names that suggest personal data or request content (T106 plus TRANSIT-1's vocabulary). A
 * column whose name matches must be declared PII or carry a written reason why it is safe.
 */
const SUSPICIOUS = /e?mail|name|phone|addr|ip|address|text|content|prompt|body|message|output|filename|birth|gender|avatar|photo|picture|location|agent/i

type Entry = Kind | readonly [Kind, string]

/**
 * Every column of every table. `[kind, why]` explains a column whose name matches SUSPICIOUS.
 * Tables of migrations not registered yet may be listed ahead of time: an entry for a table or
 * column that does not exist is reported as a diagnostic, never hides anything.
 */
export const CLASSIFICATION: Readonly<Record<string, Readonly<Record<string, Entry>>>> = {
  tollgate_migration: { name: ['migration', 'the migration file name, e.g. 0001-foundation'], timestamp: 'migration' },
  tollgate_migration_lock: { id: 'migration', is_locked: 'migration' },
  org: { id: 'id', slug: 'slug', created_at: 'timestamp', terminated_at: 'timestamp' },
  org_key: { id: 'id', org_id: 'fk', purpose: 'enum', wrapped: 'wrapped-key', master_key_id: 'id', vault: 'flag', created_at: 'timestamp', destroyed_at: 'timestamp' },
  api_key: {
    id: 'id', org_id: 'fk', environment: 'enum', user_id: 'fk', label: 'label', secret_hash: 'hash', created_at: 'timestamp',
    expires_at: 'timestamp', revoked_at: 'timestamp', last_used_at: 'timestamp', replaced_by: 'fk', created_by_type: 'enum',
    created_by: 'fk', scope: 'enum',
  },
  decision: {
    id: 'id', org_id: 'fk', environment: 'enum', key_id: 'fk', actor_id: 'pseudonym', request_id: 'id', endpoint: 'enum',
    model: 'model-name', provider: 'enum', outcome: 'enum', status: 'code', error_code: 'code', stream: 'flag',
    input_tokens: 'count', output_tokens: ['count', 'a token count, not the output'], attachment_count: 'count',
    attachment_types: 'code', prompt_fingerprint: ['hmac', 'HMAC-SHA-256 of the prompt under the org key (D1), not the prompt'],
    domain: 'enum', intent: 'enum', friction: 'enum', passed: 'flag', reasoning_score: 'metric', rule_id: 'code', reason: 'code',
    cohort: ['code', 'the key member\'s team at decision time: a cohort id (policy COHORT pattern, like rule_id), not a person'],
    finding_codes: 'code', classifier: 'enum', classify_ms: 'metric', policy_ms: 'metric', auth_ms: 'metric',
    upstream_ms: 'metric', total_ms: 'metric', created_at: 'timestamp', completed_at: 'timestamp',
  },
  audit_event: {
    chain_id: 'fk', seq: 'count', at: 'timestamp', actor_type: 'enum', actor_id: 'pseudonym', action: 'enum', target_type: 'enum',
    target_id: 'id', outcome: 'enum', request_id: 'id', prev_hash: 'hash', hash: 'hash',
  },
  // Identity (migration 0002-identity).
  user: { id: 'id', email: ['email', 'the one piece of PII (DATA-1)'], created_at: 'timestamp', disabled_at: 'timestamp' },
  user_identity: { subject_hash: 'pseudonym', user_id: 'fk', provider: 'enum', org_id: 'fk', created_at: 'timestamp' },
  membership: { org_id: 'fk', user_id: 'fk', role: 'enum', team: 'code', created_at: 'timestamp' },
  session: {
    id: 'id', user_id: 'fk', token_hash: 'hash', prev_token_hash: 'hash', prev_valid_until: 'timestamp', kind: 'enum', org_id: 'fk',
    created_at: 'timestamp', absolute_expires_at: 'timestamp', idle_timeout_ms: 'metric', last_seen_at: 'timestamp', auth_at: 'timestamp',
    rotated_at: 'timestamp', rotate_after: 'timestamp', ended_at: 'timestamp', end_reason: 'enum',
  },
  passkey: { id: 'id', user_id: 'fk', public_key: 'public-key', counter: 'count', transports: 'code', backed_up: 'flag', created_at: 'timestamp', last_used_at: 'timestamp' },
  invite: {
    id: 'id', org_id: 'fk', email: ['email', "the invitee's address until the invite is accepted, revoked or expired (then purged)"], role: 'enum',
    token_hash: 'hash', created_by: 'fk', created_at: 'timestamp', expires_at: 'timestamp', accepted_at: 'timestamp', revoked_at: 'timestamp',
  },
  sso_config: { org_id: 'fk', issuer: 'org-config', client_id: 'org-config', client_secret_sealed: 'sealed-secret', allowed_domains: 'org-config', updated_at: 'timestamp' },
  login_link: { token_hash: 'hash', user_id: 'fk', created_at: 'timestamp', expires_at: 'timestamp', used_at: 'timestamp' },
  instance_key: { purpose: 'enum', wrapped: 'wrapped-key', master_key_id: 'id', created_at: 'timestamp' },
  // Policies and org settings (migration 0003-policy).
  policy: {
    id: 'id', org_id: 'fk', environment: 'enum', version: 'count', document: ['org-config', 'a validated policy document: labels, codes, numbers and flags only, no free text'],
    status: 'enum', source_id: 'fk', created_at: 'timestamp', created_by: 'pseudonym', updated_at: 'timestamp', activated_at: 'timestamp', tested_at: 'timestamp', retired_at: 'timestamp',
  },
  org_setting: { org_id: 'fk', training_consent: 'flag', classifier_llm: 'enum', workspace: 'flag', updated_at: 'timestamp', updated_by: 'pseudonym' },
  // Rate-limit tiers and idempotency records (migration 0004-abuse).
  rate_tier: { org_id: 'fk', endpoint_group: 'enum', per_minute: 'count', updated_at: 'timestamp' },
  idempotency: {
    org_id: ['fk', "the org of an org-scoped call, or '' for a person's own calls"], credential_id: 'fk', key_hash: 'hash', method: 'enum', route: 'enum', fingerprint: 'hash', state: 'enum', lock_until: 'timestamp',
    status: 'count', response_sealed: 'sealed-response',
    decision_id: 'fk', created_at: 'timestamp', expires_at: 'timestamp',
    effect: ['fk', 'the audited target of an admin effect: a resource type and its id'],
  },
  // Signed audit checkpoints (migration 0005-audit-checkpoints).
  audit_checkpoint: { id: 'id', chain_id: 'fk', seq: 'count', head_hash: 'hash', at: 'timestamp', key_id: 'id', signature: ['public-key', 'an Ed25519 signature over (chain, seq, head hash, time): public, verifiable material'] },
  // Anomaly alerts (migration 0007-analytics, AUDIT-4): the webhook's URL and signing secret sealed together; alerts sent, as counts.
  alert_webhook: { org_id: 'fk', config_sealed: 'sealed-secret', created_at: 'timestamp', updated_at: 'timestamp' },
  alert_sent: { org_id: 'fk', kind: 'enum', window_start: 'timestamp', count: 'count', threshold: 'count', outcome: 'enum', sent_at: 'timestamp' },
  // Scheduled backup leases (migration 0009-backup-slots).
  backup_slot: { slot_at: 'timestamp', claimed_at: 'timestamp' },
  // What a person chose to store (migration 0011-artifacts): sealed under the org's data key, owned by a pseudonym.
  artifact: { id: 'id', org_id: 'fk', owner_id: 'pseudonym', sealed: 'sealed-content', size_bytes: 'count', temporary: 'flag', created_at: 'timestamp', expires_at: 'timestamp' },
  harm_report: { id: 'id', org_id: 'fk', reporter_id: 'pseudonym', category: 'enum', decision_id: 'fk', sealed: 'sealed-content', size_bytes: 'count', created_at: 'timestamp' },
}

/**
 * The PII columns, declared one by one (DATA-1). Adding one means changing this line on purpose.
 * Only those that exist in the migrated schema are compared (a declared column of a migration
 * not registered yet is not required to exist).
 */
export const DECLARED_PII: readonly string[] = ['user.email', 'invite.email']

export type Schema = ReadonlyMap<string, readonly string[]>

export interface SchemaFindings {
  readonly problems: string[]
  readonly pii: string[]
  /** Classified tables/columns that the schema does not have (informational). */
  readonly absent: string[]
}

/** The pure check: schema × classification → every problem at once. */
export function checkSchema(schema: Schema, classification = CLASSIFICATION, declaredPii = DECLARED_PII): SchemaFindings {
  const problems: string[] = []
  const pii: string[] = []
  for (const [table, columns] of schema) {
    const known = classification[table]
    for (const column of columns) {
      const name = `${table}.${column}`
      const entry = known?.[column]
      if (entry === undefined) {
        problems.push(`${name} is not classified: add it to CLASSIFICATION in test/unit/schema.test.ts with what it holds`)
        continue
      }
      const [kind, why] = typeof entry === 'string' ? [entry, undefined] : entry
      if (PII_KINDS.has(kind)) {
        pii.push(name)
        if (!declaredPii.includes(name)) problems.push(`${name} holds personal data (${kind}) but is not in DECLARED_PII (DATA-1 allows only the email address)`)
      } else if (SUSPICIOUS.test(column) && !why) {
        problems.push(`${name} has a name that suggests personal data or content: classify it with [kind, 'why it is safe'] or rename it`)
      }
      if (table === 'decision' && !DECISION_KINDS.has(kind)) problems.push(`${name} is classified ${kind}, which the decision record may not hold (TRANSIT-3)`)
    }
  }
  for (const name of declaredPii) {
    const [table, column] = name.split('.') as [string, string]
    const columns = schema.get(table)
    if (columns?.includes(column)) {
      const entry = classification[table]?.[column]
      const kind = typeof entry === 'string' ? entry : entry?.[0]
      if (!kind || !PII_KINDS.has(kind)) problems.push(`${name} is declared PII but not classified as a PII kind`)
    }
  }
  const absent: string[] = []
  for (const [table, columns] of Object.entries(classification)) {
    const actual = schema.get(table)
    if (!actual) absent.push(table)
    else for (const c of Object.keys(columns)) if (!actual.includes(c)) absent.push(`${table}.${c}`)
  }
  return { problems, pii: pii.sort(), absent }
}

/** The real schema after every registered migration, read back from the database's own catalog. */
async function migratedSchema(t: TestContext, dialect: Dialect): Promise<Map<string, string[]> | undefined> {
  let url: string | undefined
  if (dialect === 'postgres') {
    if (!(await needService(t, 'postgres'))) return undefined
    url = await freshPostgres(t)
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-schema-'))
  const database = openDatabase({ url, dataDir })
  try {
    await migrateToLatest(database.db, dialect)
    const schema = new Map<string, string[]>()
    if (dialect === 'sqlite') {
      const tables = await sql<{ name: string }>`select name from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name`.execute(database.db)
      for (const { name } of tables.rows) {
        const cols = await sql<{ name: string }>`select name from pragma_table_info(${name}) order by cid`.execute(database.db)
        schema.set(name, cols.rows.map((c) => c.name))
      }
    } else {
      const cols = await sql<{ table_name: string; column_name: string }>`
        select table_name, column_name from information_schema.columns
        where table_schema = current_schema() order by table_name, ordinal_position`.execute(database.db)
      for (const { table_name, column_name } of cols.rows) schema.set(table_name, [...(schema.get(table_name) ?? []), column_name])
    }
    return schema
  } finally {
    await database.close()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

const schemas = new Map<Dialect, Promise<Map<string, string[]> | undefined>>()
function schemaOf(t: TestContext, dialect: Dialect) {
  // One migrated database per dialect for the whole file (the PostgreSQL one is dropped after its first test).
  if (!schemas.has(dialect)) schemas.set(dialect, migratedSchema(t, dialect))
  return schemas.get(dialect)!
}

test('TRANSIT-3 DATA-1: the schema checker finds a planted unclassified column, a suspicious name, undeclared PII and text in the decision record (positive control)', () => {
  const planted: Schema = new Map([
    ['org', ['id', 'slug', 'created_at', 'terminated_at', 'display_name']],
    ['decision', [...DECISION_COLUMNS, 'prompt_text']],
    ['api_key', ['id', 'label']],
    ['user', ['id', 'email']],
  ])
  const classification = {
    ...CLASSIFICATION,
    org: { ...CLASSIFICATION['org'], display_name: 'slug' as const },
    decision: { ...CLASSIFICATION['decision'], prompt_text: ['label', 'sneaky'] as const },
  }
  const { problems, pii } = checkSchema(planted, classification, [])
  const has = (re: RegExp) => assert.ok(problems.some((p) => re.test(p)), `expected a problem matching ${re}; got:\n${problems.join('\n')}`)
  has(/^org\.display_name has a name that suggests personal data/)
  has(/^decision\.prompt_text is classified label, which the decision record may not hold/)
  has(/^user\.email holds personal data .* not in DECLARED_PII/)
  assert.deepEqual(pii, ['user.email'])
  const unclassified = checkSchema(new Map([['org', ['id', 'phone']]]))
  assert.deepEqual(unclassified.problems, ['org.phone is not classified: add it to CLASSIFICATION in test/unit/schema.test.ts with what it holds'])
  // A declared PII column must also be classified as PII.
  assert.match(checkSchema(new Map([['org', ['id']]]), CLASSIFICATION, ['org.id']).problems.join('\n'), /org\.id is declared PII but not classified as a PII kind/)
})

for (const dialect of ['sqlite', 'postgres'] as const) {
  test(`TRANSIT-3 DATA-1: every column of the migrated ${dialect} schema is classified; the only personal data is the declared email columns`, async (t) => {
    const schema = await schemaOf(t, dialect)
    if (!schema) return t.skip(`${dialect} is not available`)
    assert.ok(schema.has('decision') && schema.has('api_key') && schema.has('audit_event'), 'the schema was read')
    const { problems, pii, absent } = checkSchema(schema)
    assert.deepEqual(problems, [], `schema problems:\n${problems.join('\n')}`)
    assert.deepEqual(pii, DECLARED_PII.filter((n) => schema.get(n.split('.')[0]!)?.includes(n.split('.')[1]!)).sort(), 'the PII columns are exactly the declared ones')
    assert.ok(pii.every((n) => n.endsWith('.email')), 'the only kind of personal data is an email address')
    if (absent.length > 0) t.diagnostic(`classified but not in the ${dialect} schema (a migration not registered yet?): ${absent.join(', ')}`)
  })

  test(`TRANSIT-3: DECISION_COLUMNS lists exactly the decision table's columns [${dialect}]`, async (t) => {
    const schema = await schemaOf(t, dialect)
    if (!schema) return t.skip(`${dialect} is not available`)
    assert.deepEqual([...DECISION_COLUMNS].sort(), [...schema.get('decision')!].sort())
  })
}

test('TRANSIT-3: SQLite and PostgreSQL end up with the same tables and columns', async (t) => {
  const [lite, pg] = await Promise.all([schemaOf(t, 'sqlite'), schemaOf(t, 'postgres')])
  if (!lite || !pg) return t.skip('PostgreSQL is not available')
  const flat = (s: Map<string, string[]>) => [...s].flatMap(([table, cols]) => cols.map((c) => `${table}.${c}`)).sort()
  assert.deepEqual(flat(pg), flat(lite))
})
