/**
 * Roles and the one permission table (RBAC-1). Every admin route declares one action; `can`
 * answers whether a role may perform it. A test enumerates every route × role × own/other org.
 */
export const ROLES = ['OWNER', 'ADMIN', 'ANALYST', 'MEMBER'] as const
export type Role = (typeof ROLES)[number]

export const ACTIONS = [
  'org.read',
  'environment.list',
  'member.list',
  'member.invite',
  'member.role',
  'member.remove',
  'member.sessions.end',
  'invite.list',
  'invite.revoke',
  'sso.read',
  'sso.write',
  'key.list',
  'key.create',
  'key.rotate',
  'key.revoke',
  'audit.read',
  'policy.read',
  'policy.write',
  'policy.test',
  'policy.promote',
  'policy.retire',
  'settings.read',
  'settings.write',
  'org.terminate',
  'analytics.read',
  'alerts.read',
  'alerts.write',
  'artifact.read',
  'artifact.write',
  'report.create',
  'report.review',
] as const
export type Action = (typeof ACTIONS)[number]

const ALL: readonly Action[] = ACTIONS

/**
 * What every member may do with what they themselves chose to store (RIGHTS-3, GW-8): save, read
 * and delete their own artifacts (the routes never show anyone else's, whatever the role), and
 * report a harmful output or withdraw their own report. Reviewing reports is `report.review`.
 */
const OWN: readonly Action[] = ['artifact.read', 'artifact.write', 'report.create']

/** Who may do what in an org. MEMBERs manage only their own keys (enforced by the key routes). */
export const PERMISSIONS: Readonly<Record<Role, ReadonlySet<Action>>> = {
  OWNER: new Set(ALL),
  // settings.write is OWNER-only: opting in to training on customer content (DATA-4) commits the org.
  // org.terminate is OWNER-only: it ends the org and deletes all its data (RIGHTS-2).
  ADMIN: new Set(ALL.filter((a) => a !== 'settings.write' && a !== 'org.terminate')),
  // report.review (OWNER/ADMIN) reads reported outputs: never ANALYSTs or MEMBERs.
  // analytics.read: cohort aggregates only, k-floored (RBAC-3). The alert webhook (alerts.*) is OWNER/ADMIN: its URL may carry a token.
  ANALYST: new Set<Action>(['org.read', 'environment.list', 'member.list', 'key.list', 'audit.read', 'policy.read', 'settings.read', 'analytics.read', ...OWN]),
  MEMBER: new Set<Action>(['org.read', 'environment.list', 'key.list', 'key.create', 'key.rotate', 'key.revoke', ...OWN]),
}

/**
 * Actions that need a fresh authentication (AUTH-6): a passkey assertion or an IdP sign-in with a
 * fresh `auth_time`, within the step-up window.
 */
export const SENSITIVE: ReadonlySet<Action> = new Set<Action>([
  'member.invite', 'member.role', 'member.remove', 'member.sessions.end', 'invite.revoke', 'sso.write', 'key.create', 'key.rotate', 'key.revoke',
  // What production enforces, and the DATA-4 training consent.
  'policy.promote', 'policy.retire', 'settings.write',
  // Ending an org and destroying its keys (RIGHTS-2).
  'org.terminate',
  // Where anomaly alerts (AUDIT-4) go, signed with a secret shown once.
  'alerts.write',
])

export function can(role: Role, action: Action): boolean {
  return PERMISSIONS[role].has(action)
}

/** Whether an ADMIN or OWNER acts on any member's keys, or a MEMBER only on their own. */
export function managesAllKeys(role: Role): boolean {
  return role === 'OWNER' || role === 'ADMIN'
}

export function isRole(v: unknown): v is Role {
  return typeof v === 'string' && (ROLES as readonly string[]).includes(v)
}
