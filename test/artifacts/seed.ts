import { ArtifactStore } from '../../src/artifacts/artifacts.ts'
import { ReportStore } from '../../src/artifacts/reports.ts'
import type { TestApp } from '../helpers/app.ts'

const operator = { type: 'operator' as const, id: null }

/** Turns the org's workspace on as its OWNER would (through the same audited store). */
export async function enableWorkspace(tg: TestApp, orgId: string): Promise<void> {
  await tg.deps.orgSettings.update({ orgId, workspace: true, actor: operator })
}

/** An artifact saved by `userId` in `orgId` through the real store (the workspace turned on first). */
export async function artifactOf(tg: TestApp, orgId: string, userId: string, content = 'a saved answer', temporary = false): Promise<string> {
  await enableWorkspace(tg, orgId)
  const d = tg.deps
  const ownerId = await d.keyring.pseudonym(orgId, userId)
  return (await new ArtifactStore(d.db.db, d.clock, d.audit, d.keyring).save({ orgId, ownerId, content, title: null, temporary, actor: { type: 'user', id: ownerId } })).id
}

/** An open report by `userId` in `orgId`, through the real store. */
export async function reportOf(tg: TestApp, orgId: string, userId: string, text = 'a harmful answer'): Promise<string> {
  const d = tg.deps
  const reporterId = await d.keyring.pseudonym(orgId, userId)
  return (await new ReportStore(d.db.db, d.clock, d.audit, d.keyring).submit({ orgId, reporterId, text, category: 'S1', decisionId: null, actor: { type: 'user', id: reporterId } })).id
}
