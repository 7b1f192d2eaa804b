import type { Kysely, Transaction } from 'kysely'
import { withAudit, type AuditLog } from '../audit/audit.ts'
import type { LlmModeSetting } from '../classify/facts.ts'
import type { Clock } from '../core/clock.ts'
import type { Actor } from '../keys/keys.repo.ts'
import type { PolicyDB } from '../policy/policies.repo.ts'
import type { DB } from '../storage/schema.ts'

export interface OrgSettings {
  /**
   * DATA-4: whether the org explicitly opted in to its customer content being used for training.
   * Off by default. Tollgate itself never stores content (TRANSIT-1) and trains on nothing; the
   * flag records the org's decision, and every change of it is in the audit log.
   */
  readonly trainingConsent: boolean
  /**
   * GW-3: whether requests of this org are escalated to the LLM classifier — `off`, only
   * uncertain ones (`low_margin`) or `always` — or null to follow TOLLGATE_CLASSIFIER_LLM. It
   * takes effect only where the instance has an LLM classifier (a production Anthropic or Gemini key).
   */
  readonly classifierLlm: LlmModeSetting | null
  /**
   * RIGHTS-3: whether members may save outputs to the workspace (encrypted under the org's data
   * key). Off by default: Tollgate stores nothing a person did not choose to store, and an org
   * chooses first. Reports of harmful output (GW-8) do not depend on it.
   */
  readonly workspace: boolean
  /** When the settings last changed; null while they are the defaults. */
  readonly updatedAt: number | null
  /** Pseudonym of whoever changed them last; null for the defaults or the operator. */
  readonly updatedBy: string | null
}

export const DEFAULT_ORG_SETTINGS: OrgSettings = { trainingConsent: false, classifierLlm: null, workspace: false, updatedAt: null, updatedBy: null }

type Row = { training_consent: number; classifier_llm: string | null; workspace: number; updated_at: number; updated_by: string | null }
const present = (row: Row | undefined): OrgSettings => row
  ? { trainingConsent: row.training_consent === 1, classifierLlm: (row.classifier_llm as LlmModeSetting | null) ?? null, workspace: row.workspace === 1, updatedAt: row.updated_at, updatedBy: row.updated_by }
  : DEFAULT_ORG_SETTINGS

/** Org-level settings (table `org_setting`, one row per org once anything was changed). */
export class OrgSettingsStore {
  readonly #db: Kysely<PolicyDB>

  constructor(
    db: Kysely<DB>,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
  ) {
    this.#db = db as unknown as Kysely<PolicyDB>
  }

  async get(orgId: string): Promise<OrgSettings> {
    return present(await this.#db.selectFrom('org_setting').selectAll().where('org_id', '=', orgId).executeTakeFirst())
  }

  /**
   * Changes the settings given, each audited in the same transaction: `training_consent_granted` /
   * `training_consent_withdrawn` (DATA-4), `classifier_llm_changed` (GW-3), `workspace_enabled` /
   * `workspace_disabled` (RIGHTS-3). A value it already has
   * changes nothing and writes nothing.
   */
  async update(input: { orgId: string; trainingConsent?: boolean; classifierLlm?: LlmModeSetting | null; workspace?: boolean; actor: Actor }): Promise<OrgSettings> {
    return withAudit(this.#db as unknown as Kysely<DB>, async (trx) => {
      const t = trx as unknown as Transaction<PolicyDB>
      const current = present(await t.selectFrom('org_setting').selectAll().where('org_id', '=', input.orgId).executeTakeFirst())
      const consent = input.trainingConsent ?? current.trainingConsent
      const llm = input.classifierLlm === undefined ? current.classifierLlm : input.classifierLlm
      const workspace = input.workspace ?? current.workspace
      const actions: string[] = []
      if (consent !== current.trainingConsent) actions.push(consent ? 'training_consent_granted' : 'training_consent_withdrawn')
      if (llm !== current.classifierLlm) actions.push('classifier_llm_changed')
      if (workspace !== current.workspace) actions.push(workspace ? 'workspace_enabled' : 'workspace_disabled')
      if (actions.length === 0) return current
      const now = this.clock.now()
      const values = { org_id: input.orgId, training_consent: consent ? 1 : 0, classifier_llm: llm, workspace: workspace ? 1 : 0, updated_at: now, updated_by: input.actor.id }
      await t.insertInto('org_setting').values(values)
        .onConflict((oc) => oc.column('org_id').doUpdateSet({ training_consent: values.training_consent, classifier_llm: llm, workspace: values.workspace, updated_at: now, updated_by: values.updated_by }))
        .execute()
      for (const action of actions) {
        await this.audit.append(trx, {
          chainId: input.orgId, actorType: input.actor.type, actorId: input.actor.id, action,
          targetType: 'org_setting', targetId: input.orgId, outcome: 'success', requestId: input.actor.requestId ?? null,
        })
      }
      return { trainingConsent: consent, classifierLlm: llm, workspace, updatedAt: now, updatedBy: input.actor.id }
    })
  }
}
