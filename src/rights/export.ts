import type { Kysely } from 'kysely'
import { openArtifactsOf } from '../artifacts/artifacts.ts'
import { reportsBy } from '../artifacts/reports.ts'
import { DECISION_COLUMNS } from '../decisions/record.ts'
import type { OrgKeyring } from '../privacy/org-keys.ts'
import type { DB } from '../storage/schema.ts'

/**
 * RIGHTS-1: everything Tollgate stores about one person, as JSON — and nothing of anyone else,
 * no secret, no prompt text (none is stored). What is left out, and why:
 * - session token hashes, API key hashes, wrapped keys: credentials (or their verifiers);
 * - a passkey's public key and signature counter: verification material of no use to the person
 *   (the credential id is kept, as GET /api/me/passkeys shows it: WebAuthn sends it in the
 *   clear in every ceremony, it is not a secret);
 * - the sign-in identity's subject hash: an HMAC under the instance key, meaningful only to the
 *   server (the provider and org are listed);
 * - an audit entry's target when it names another person (their pseudonym).
 * Decision records and audit entries are found by the person's pseudonym in each org
 * (OrgKeyring.pseudonym, as the gateway sets `actor_id`) and by their own keys' ids.
 */
export interface AccountExport {
  readonly format: 'tollgate-account-export/1'
  readonly exported_at: string
  readonly user: { id: string; email: string; created_at: string; disabled_at: string | null }
  readonly memberships: Array<{ org_id: string; org_slug: string; role: string; team: string | null; since: string; pseudonym: string }>
  readonly identities: Array<{ provider: string; org_id: string | null; created_at: string }>
  readonly sessions: Array<{ id: string; kind: string; org_id: string | null; created_at: string; last_seen_at: string; expires_at: string; ended_at: string | null; end_reason: string | null; current: boolean }>
  readonly passkeys: Array<{ id: string; transports: string | null; backed_up: boolean; created_at: string; last_used_at: string | null }>
  readonly login_links: Array<{ created_at: string; expires_at: string; used_at: string | null }>
  readonly api_keys: Array<{ id: string; org_id: string; environment: string; scope: string; label: string | null; created_at: string; expires_at: string | null; last_used_at: string | null; revoked_at: string | null; replaced_by: string | null }>
  readonly decisions: Array<Record<string, string | number | null>>
  readonly audit: Array<{ org_id: string; seq: number; at: string; action: string; target_type: string | null; target_id: string | null; outcome: string; request_id: string | null }>
  /** RIGHTS-3: the artifacts I saved to a workspace, decrypted (what I chose to store is mine to take). */
  readonly artifacts: Array<{ id: string; org_id: string; created_at: string; size_bytes: number; temporary: boolean; expires_at: string | null; title: string | null; content: string }>
  /** GW-8: my open reports of harmful output, metadata only (the text went to the org's reviewers). */
  readonly reports: Array<{ id: string; org_id: string; category: string; decision_id: string | null; created_at: string; purge_by: string }>
}

const iso = (ms: number) => new Date(ms).toISOString()
const isoOrNull = (ms: number | null) => (ms === null ? null : iso(ms))
/** Targets that name a person: kept only when the person is the exporter. */
const PERSON_TARGETS = new Set(['member', 'user'])

export async function exportAccount(d: { readonly db: Kysely<DB>; readonly keyring: OrgKeyring; readonly now: number }, userId: string, currentSessionId: string | undefined): Promise<AccountExport | undefined> {
  const { db } = d
  const user = await db.selectFrom('user').selectAll().where('id', '=', userId).executeTakeFirst()
  if (!user) return undefined
  const memberships = await db.selectFrom('membership').innerJoin('org', 'org.id', 'membership.org_id')
    .select(['org.id', 'org.slug', 'membership.role', 'membership.team', 'membership.created_at']).where('membership.user_id', '=', userId).where('org.terminated_at', 'is', null)
    .orderBy('org.slug').execute()
  const keys = await db.selectFrom('api_key').selectAll().where('user_id', '=', userId).orderBy('created_at').orderBy('id').execute()

  // My pseudonym in every live org I belong to or hold keys in (a terminated org's key is destroyed).
  const keyOrgs = [...new Set(keys.map((k) => k.org_id))]
  const liveKeyOrgs = keyOrgs.length === 0 ? [] : (await db.selectFrom('org').select('id').where('id', 'in', keyOrgs).where('terminated_at', 'is', null).execute()).map((r) => r.id)
  const pseudonyms = new Map<string, string>()
  for (const orgId of [...new Set([...memberships.map((m) => m.id), ...liveKeyOrgs])].sort()) pseudonyms.set(orgId, await d.keyring.pseudonym(orgId, userId))

  const keyIds = keys.map((k) => k.id)
  const decisionRows = pseudonyms.size === 0 && keyIds.length === 0 ? [] : await db.selectFrom('decision').select([...DECISION_COLUMNS])
    .where((eb) => eb.or([
      ...[...pseudonyms].map(([orgId, p]) => eb.and([eb('org_id', '=', orgId), eb('actor_id', '=', p)])),
      ...(keyIds.length > 0 ? [eb('key_id', 'in', keyIds)] : []),
    ]))
    .orderBy('created_at').orderBy('id').execute()

  const audit: AccountExport['audit'] = []
  for (const [orgId, p] of pseudonyms) {
    const rows = await db.selectFrom('audit_event').select(['seq', 'at', 'action', 'target_type', 'target_id', 'outcome', 'request_id'])
      .where('chain_id', '=', orgId).where('actor_id', '=', p).orderBy('seq').execute()
    for (const r of rows) {
      const othersTarget = r.target_type !== null && PERSON_TARGETS.has(r.target_type) && r.target_id !== p
      audit.push({ org_id: orgId, seq: Number(r.seq), at: iso(r.at), action: r.action, target_type: r.target_type, target_id: othersTarget ? null : r.target_id, outcome: r.outcome, request_id: r.request_id })
    }
  }

  const artifacts: AccountExport['artifacts'] = []
  const reports: AccountExport['reports'] = []
  for (const [orgId, p] of pseudonyms) {
    for (const a of await openArtifactsOf(db, d.keyring, orgId, p, d.now)) {
      artifacts.push({ id: a.id, org_id: orgId, created_at: iso(a.createdAt), size_bytes: a.sizeBytes, temporary: a.temporary, expires_at: isoOrNull(a.expiresAt), title: a.title, content: a.content })
    }
    for (const r of await reportsBy(db, orgId, p, d.now)) {
      reports.push({ id: r.id, org_id: orgId, category: r.category, decision_id: r.decisionId, created_at: iso(r.createdAt), purge_by: iso(r.purgeBy) })
    }
  }

  const [identities, sessions, passkeys, links] = await Promise.all([
    db.selectFrom('user_identity').select(['provider', 'org_id', 'created_at']).where('user_id', '=', userId).orderBy('created_at').execute(),
    db.selectFrom('session').select(['id', 'kind', 'org_id', 'created_at', 'last_seen_at', 'absolute_expires_at', 'ended_at', 'end_reason']).where('user_id', '=', userId).orderBy('created_at').orderBy('id').execute(),
    db.selectFrom('passkey').select(['id', 'transports', 'backed_up', 'created_at', 'last_used_at']).where('user_id', '=', userId).orderBy('created_at').execute(),
    db.selectFrom('login_link').select(['created_at', 'expires_at', 'used_at']).where('user_id', '=', userId).orderBy('created_at').execute(),
  ])

  return {
    format: 'tollgate-account-export/1',
    exported_at: iso(d.now),
    user: { id: user.id, email: user.email, created_at: iso(user.created_at), disabled_at: isoOrNull(user.disabled_at) },
    memberships: memberships.map((m) => ({ org_id: m.id, org_slug: m.slug, role: m.role, team: m.team, since: iso(m.created_at), pseudonym: pseudonyms.get(m.id)! })),
    identities: identities.map((i) => ({ provider: i.provider, org_id: i.org_id, created_at: iso(i.created_at) })),
    sessions: sessions.map((s) => ({
      id: s.id, kind: s.kind, org_id: s.org_id, created_at: iso(s.created_at), last_seen_at: iso(s.last_seen_at), expires_at: iso(s.absolute_expires_at),
      ended_at: isoOrNull(s.ended_at), end_reason: s.end_reason, current: s.id === currentSessionId,
    })),
    passkeys: passkeys.map((k) => ({ id: k.id, transports: k.transports, backed_up: k.backed_up === 1, created_at: iso(k.created_at), last_used_at: isoOrNull(k.last_used_at) })),
    login_links: links.map((l) => ({ created_at: iso(l.created_at), expires_at: iso(l.expires_at), used_at: isoOrNull(l.used_at) })),
    api_keys: keys.map((k) => ({
      id: k.id, org_id: k.org_id, environment: k.environment, scope: k.scope, label: k.label, created_at: iso(k.created_at), expires_at: isoOrNull(k.expires_at),
      last_used_at: isoOrNull(k.last_used_at), revoked_at: isoOrNull(k.revoked_at), replaced_by: k.replaced_by,
    })),
    decisions: decisionRows.map((r) => {
      const row: Record<string, string | number | null> = { ...r }
      row['created_at'] = iso(r.created_at)
      row['completed_at'] = iso(r.completed_at)
      return row
    }),
    audit,
    artifacts,
    reports,
  }
}
