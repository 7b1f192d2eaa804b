import type { Kysely } from 'kysely'
import { withAudit, type AuditLog } from '../audit/audit.ts'
import type { Clock } from '../core/clock.ts'
import { TollgateError } from '../core/errors.ts'
import { newId } from '../core/ids.ts'
import type { Actor } from '../keys/keys.repo.ts'
import type { PolicyDB } from '../policy/policies.repo.ts'
import type { OrgKeyring } from '../privacy/org-keys.ts'
import type { DB } from '../storage/schema.ts'
import { expireEach } from './expire.ts'
import { ARTIFACT_MAX_BYTES, NEVER, openStored, sealStored, TEMPORARY_TTL_MS, utf8Bytes } from './sealing.ts'

/** What is shown about an artifact without opening it. */
export interface ArtifactInfo {
  readonly id: string
  readonly createdAt: number
  readonly sizeBytes: number
  readonly temporary: boolean
  readonly expiresAt: number | null
}

export interface OpenedArtifact extends ArtifactInfo {
  readonly title: string | null
  readonly content: string
}

type Sealed = { c: string; t: string | null }
type Row = { id: string; created_at: number; size_bytes: number; temporary: number; expires_at: number | null }
const info = (r: Row): ArtifactInfo => ({ id: r.id, createdAt: Number(r.created_at), sizeBytes: Number(r.size_bytes), temporary: r.temporary === 1, expiresAt: r.expires_at === null ? null : Number(r.expires_at) })
const META = ['id', 'created_at', 'size_bytes', 'temporary', 'expires_at'] as const

/**
 * RIGHTS-3: outputs a person explicitly saves to the workspace of an org that opted in. Content and
 * title are sealed under the org's data key; every read and delete is scoped to the owner's
 * pseudonym, so nobody else — whatever their role — can read, list or delete them. Temporary ones
 * stop opening at their expiry (24 h) and the retention job deletes them at its next run.
 * Terminating the org destroys its data key: every sealed row is then unreadable, copies included.
 */
export class ArtifactStore {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly keyring: OrgKeyring,
  ) {}

  /**
   * Saves an artifact for `ownerId` (the person's pseudonym in the org), audited `artifact_saved`
   * in the same transaction. 403 workspace_disabled unless the org opted in (read inside the
   * transaction, so a concurrent opt-out is never overtaken); 413 text_too_large over 64 KiB.
   */
  async save(input: { orgId: string; ownerId: string; content: string; title: string | null; temporary: boolean; actor: Actor }): Promise<ArtifactInfo> {
    const size = utf8Bytes(input.content)
    if (size > ARTIFACT_MAX_BYTES) throw new TollgateError('text_too_large', { bytes: size }, 'body.content')
    return withAudit(this.db, async (trx) => {
      const setting = await (trx as unknown as Kysely<PolicyDB>).selectFrom('org_setting').select('workspace').where('org_id', '=', input.orgId).executeTakeFirst()
      if (setting?.workspace !== 1) throw new TollgateError('workspace_disabled')
      const now = this.clock.now()
      const id = newId()
      const expiresAt = input.temporary ? now + TEMPORARY_TTL_MS : null
      const key = await this.keyring.key(input.orgId, 'data', trx)
      const sealed = sealStored<Sealed>(key, 'artifact', input.orgId, id, { c: input.content, t: input.title }, expiresAt ?? NEVER)
      const row = { id, org_id: input.orgId, owner_id: input.ownerId, sealed, size_bytes: size, temporary: input.temporary ? 1 : 0, created_at: now, expires_at: expiresAt }
      await trx.insertInto('artifact').values(row).execute()
      await this.audit.append(trx, {
        chainId: input.orgId, actorType: input.actor.type, actorId: input.actor.id, action: 'artifact_saved',
        targetType: 'artifact', targetId: id, outcome: 'success', requestId: input.actor.requestId ?? null,
      })
      return info(row)
    })
  }

  /** The owner's live artifacts, newest first: metadata only (nothing is opened). */
  list(orgId: string, ownerId: string): Promise<ArtifactInfo[]> {
    return listArtifacts(this.db, orgId, ownerId, this.clock.now())
  }

  /** One of the owner's artifacts, opened; undefined when it is not theirs, expired or does not open. */
  open(orgId: string, ownerId: string, id: string): Promise<OpenedArtifact | undefined> {
    return openArtifact(this.db, this.keyring, orgId, ownerId, id, this.clock.now())
  }

  /** Deletes one of the owner's artifacts at once, audited `artifact_deleted`; false when it is not theirs. */
  async delete(input: { orgId: string; ownerId: string; id: string; actor: Actor }): Promise<boolean> {
    return withAudit(this.db, async (trx) => {
      const r = await trx.deleteFrom('artifact').where('id', '=', input.id).where('org_id', '=', input.orgId).where('owner_id', '=', input.ownerId).executeTakeFirst()
      if (Number(r.numDeletedRows) !== 1) return false
      await this.audit.append(trx, {
        chainId: input.orgId, actorType: input.actor.type, actorId: input.actor.id, action: 'artifact_deleted',
        targetType: 'artifact', targetId: input.id, outcome: 'success', requestId: input.actor.requestId ?? null,
      })
      return true
    })
  }

  /**
   * The retention job: deletes every temporary artifact past its expiry, each audited
   * `artifact_expired` (by the system) in its own transaction. Safe on several instances at once:
   * a row another run took is skipped. Returns how many it deleted.
   */
  async purgeExpired(): Promise<number> {
    const now = this.clock.now()
    const due = await this.db.selectFrom('artifact').select(['id', 'org_id']).where('expires_at', '<=', now).orderBy('expires_at').execute()
    return expireEach(this.db, this.audit, due, async (trx, id) => {
      const r = await trx.deleteFrom('artifact').where('id', '=', id).where('expires_at', '<=', now).executeTakeFirst()
      return Number(r.numDeletedRows) === 1
    }, { action: 'artifact_expired', targetType: 'artifact' })
  }
}

/** The owner's artifacts not expired at `now`, newest first: metadata only. */
export async function listArtifacts(db: Kysely<DB>, orgId: string, ownerId: string, now: number): Promise<ArtifactInfo[]> {
  const rows = await db.selectFrom('artifact').select([...META])
    .where('org_id', '=', orgId).where('owner_id', '=', ownerId)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
    .orderBy('created_at', 'desc').orderBy('id').execute()
  return rows.map(info)
}

/** One artifact of the owner, opened under the org's data key; undefined when not theirs, expired or unopenable. */
export async function openArtifact(db: Kysely<DB>, keyring: OrgKeyring, orgId: string, ownerId: string, id: string, now: number): Promise<OpenedArtifact | undefined> {
  const row = await db.selectFrom('artifact').select([...META, 'sealed'])
    .where('id', '=', id).where('org_id', '=', orgId).where('owner_id', '=', ownerId).executeTakeFirst()
  if (!row) return undefined
  const opened = openStored<Sealed>(await keyring.key(orgId, 'data', db), 'artifact', orgId, id, row.sealed, now)
  return opened && { ...info(row), title: opened.t, content: opened.c }
}

/** Every artifact of the owner live at `now`, opened (the account export, RIGHTS-1). */
export async function openArtifactsOf(db: Kysely<DB>, keyring: OrgKeyring, orgId: string, ownerId: string, now: number): Promise<OpenedArtifact[]> {
  const out: OpenedArtifact[] = []
  for (const a of await listArtifacts(db, orgId, ownerId, now)) {
    const opened = await openArtifact(db, keyring, orgId, ownerId, a.id, now)
    if (opened) out.push(opened)
  }
  return out
}
