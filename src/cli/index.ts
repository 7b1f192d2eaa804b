import { Command, CommanderError, Option } from 'commander'
import { loadConfig, settingDocs, type Config } from '../config/load.ts'
import { buildStores, type Stores } from '../deps.ts'
import type { KeyEnvironment } from '../keys/key-format.ts'
import { LABEL } from '../keys/keys.repo.ts'
import { SLUG } from '../orgs/orgs.repo.ts'
import { migrateToLatest } from '../storage/migrations/index.ts'
import { bootstrapOrg, issueLoginLink } from '../identity/bootstrap.ts'
import { normalizeEmail } from '../identity/users.ts'
import { registerAuditCommands } from './audit.ts'
import { INSTANCE_CHAIN, withAudit } from '../audit/audit.ts'
import { registerBackupCommands } from './backup.ts'
import { registerDoctorCommand } from './doctor.ts'
import { registerPolicyCommands } from './policy.ts'
import { serve, type ServeProcess } from './serve.ts'
import { RateTiers, type TierGroup } from '../ratelimit/tiers.ts'
import { classifyLines } from '../classify/cli.ts'
import { createClassifier } from '../classify/index.ts'

export interface Io {
  out(text: string): void
  err(text: string): void
  /** Standard input for commands that read it (`classify`); defaults to process.stdin. */
  readonly stdin?: AsyncIterable<string | Buffer>
}

export interface ProcessInfo {
  readonly env: Record<string, string | undefined>
  readonly execArgv: readonly string[]
  readonly cwd: string
}

/** Exit codes: 0 ok, 1 failed, 2 usage, 78 configuration (EX_CONFIG). */
export const EXIT = { ok: 0, failed: 1, usage: 2, config: 78 } as const

class ExitError extends Error {
  constructor(readonly exitCode: number, message: string) {
    super(message)
  }
}

const OPERATOR = { type: 'operator' as const, id: null }

/**
 * The `tollgate` command: the host operator's tool. It talks to the database directly through
 * the same stores as the server (never over HTTP); every change is audited with actor type `operator`.
 */
export async function runCli(argv: readonly string[], proc: ServeProcess, io: Io): Promise<number> {
  let exitCode: number = EXIT.ok
  const config = (): Config => {
    const r = loadConfig(proc.env, proc.cwd)
    if (!r.ok) throw new ExitError(EXIT.config, `Tollgate cannot start: the configuration has ${r.problems.length} problem(s):\n${r.problems.map((p) => `  - ${p}`).join('\n')}`)
    return r.config
  }
  const withStores = async <T>(fn: (s: Stores) => Promise<T>): Promise<T> => {
    const s = await buildStores(config(), { log: quietLog(io) })
    try {
      return await fn(s)
    } finally {
      await s.close()
    }
  }
  const print = (json: boolean, value: unknown, text: string) => io.out(json ? JSON.stringify(value) : text)

  const program = new Command('tollgate')
    .description('Tollgate: a self-hosted, transit-only policy gateway for AI requests.')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .showHelpAfterError()

  program.command('serve').description('Start the gateway (what `npm start` runs).').action(async () => {
    exitCode = await serve(config(), proc, io)
  })

  program.command('migrate').description('Create or upgrade the database schema.').action(async () => {
    await withStores(async (s) => {
      const { applied } = await migrateToLatest(s.db.db, s.db.dialect)
      io.out(applied.length === 0 ? 'The schema is up to date.' : `Applied: ${applied.join(', ')}`)
    })
  })

  program.command('config').description('List every setting: environment variable, default, unit and meaning.')
    .option('--json', 'one JSON array').action((o: { json?: boolean }) => {
      const docs = settingDocs()
      print(!!o.json, docs, docs.map((d) => `${d.env}\n    default: ${d.default}${d.unit ? ` (${d.unit})` : ''}\n    ${d.doc}`).join('\n'))
    })

  program.command('init').description('Create an org and its first OWNER, and print a single-use sign-in link (15 minutes).')
    .requiredOption('--org <slug>', 'the new org').requiredOption('--email <owner>', "the owner's email").option('--json', 'print JSON')
    .action(async (o: { org: string; email: string; json?: boolean }) => {
      if (!SLUG.test(o.org)) throw new ExitError(EXIT.usage, 'An org slug is 2-63 characters: lowercase letters, digits and dashes, starting with a letter or digit.')
      if (!normalizeEmail(o.email)) throw new ExitError(EXIT.usage, '--email must be an email address.')
      await withStores(async (s) => {
        const made = await bootstrapOrg({ ...s, db: s.db.db }, o.org, o.email, OPERATOR)
        if (!made) throw new ExitError(EXIT.failed, `An org with the slug ${o.org} already exists. For a new sign-in link: tollgate link --email <owner>`)
        print(!!o.json, { org_id: made.orgId, user_id: made.userId, link: made.link },
          `Created org ${o.org} with its OWNER. Sign in within 15 minutes (the link works once):\n\n  ${made.link}\n\nThen register a passkey on the dashboard so you can sign in again.`)
      })
    })

  program.command('link').description('Print a new single-use sign-in link (15 minutes) for an existing person.')
    .requiredOption('--email <email>', 'whose link').option('--json', 'print JSON')
    .action(async (o: { email: string; json?: boolean }) => {
      await withStores(async (s) => {
        const link = await issueLoginLink({ ...s, db: s.db.db }, o.email, OPERATOR)
        if (!link) throw new ExitError(EXIT.failed, 'No active person with that email.')
        print(!!o.json, { link }, `Sign in within 15 minutes (the link works once):\n\n  ${link}\n`)
      })
    })

  const org = program.command('org').description('Manage orgs.')
  org.command('create <slug>').description('Create an org (with its sandbox and production environments).')
    .option('--json', 'print JSON').action(async (slug: string, o: { json?: boolean }) => {
      if (!SLUG.test(slug)) throw new ExitError(EXIT.usage, 'An org slug is 2-63 characters: lowercase letters, digits and dashes, starting with a letter or digit.')
      await withStores(async (s) => {
        const created = await s.orgs.create(slug, OPERATOR)
        if (!created) throw new ExitError(EXIT.failed, `An org with the slug ${slug} already exists.`)
        print(!!o.json, { id: created.id, slug: created.slug }, `Created org ${created.slug} (${created.id}).`)
      })
    })
  org.command('list').description('List orgs.').option('--json', 'print JSON').action(async (o: { json?: boolean }) => {
    await withStores(async (s) => {
      const orgs = await s.orgs.list()
      print(!!o.json, orgs.map((x) => ({ id: x.id, slug: x.slug, created_at: new Date(x.createdAt).toISOString() })), orgs.map((x) => `${x.slug}\t${x.id}`).join('\n') || 'No orgs yet.')
    })
  })

  const keys = program.command('keys').description('Manage API keys.')
  keys.command('create').description('Create an API key and print it once (only its hash is stored).')
    .requiredOption('--org <slug>', 'the org the key belongs to')
    .addOption(new Option('--env <environment>', 'the environment the key belongs to').choices(['sandbox', 'production']).makeOptionMandatory())
    .option('--label <label>', 'a label for the key (letters, digits, space . _ -)')
    .option('--json', 'print JSON')
    .action(async (o: { org: string; env: KeyEnvironment; label?: string; json?: boolean }) => {
      if (o.label !== undefined && !LABEL.test(o.label)) throw new ExitError(EXIT.usage, 'A key label is 1-64 characters: letters, digits, spaces, dots, underscores and dashes.')
      await withStores(async (s) => {
        const target = await s.orgs.bySlug(o.org)
        if (!target) throw new ExitError(EXIT.failed, `No org with the slug ${o.org}. Create it with: tollgate org create ${SLUG.test(o.org) ? o.org : '<slug>'}`)
        const { info, key } = await s.keys.create({ orgId: target.id, environment: o.env, label: o.label ?? null, actor: OPERATOR })
        print(!!o.json, { id: info.id, key, org: target.slug, environment: info.environment },
          `Created ${info.environment} key ${info.id} for org ${target.slug}. It is shown only this once:\n\n  ${key}\n`)
      })
    })
  keys.command('list').description('List API keys (never their secrets).').option('--org <slug>', 'only this org').option('--json', 'print JSON')
    .action(async (o: { org?: string; json?: boolean }) => {
      await withStores(async (s) => {
        const target = o.org === undefined ? undefined : await s.orgs.bySlug(o.org)
        if (o.org !== undefined && !target) throw new ExitError(EXIT.failed, 'No org with that slug.')
        const list = await s.keys.list(target ? { orgId: target.id } : {})
        const state = (k: (typeof list)[number]) => (k.revokedAt !== null ? 'revoked' : k.expiresAt !== null ? `expires ${new Date(k.expiresAt).toISOString()}` : 'active')
        print(!!o.json, list.map((k) => ({ id: k.id, org_id: k.orgId, environment: k.environment, label: k.label, state: state(k), created_at: new Date(k.createdAt).toISOString(), last_used_at: k.lastUsedAt === null ? null : new Date(k.lastUsedAt).toISOString() })),
          list.map((k) => `${k.id}\t${k.environment}\t${state(k)}\t${k.label ?? ''}`).join('\n') || 'No keys.')
      })
    })
  keys.command('revoke <id>').description('Revoke a key at once.').action(async (id: string) => {
    await withStores(async (s) => {
      if (!(await s.keys.revoke({ id, actor: OPERATOR }))) throw new ExitError(EXIT.failed, 'No active key with that id.')
      io.out(`Revoked key ${id}.`)
    })
  })
  keys.command('rotate <id>').description('Issue a new key; the old one keeps working for the grace period.')
    .option('--grace <seconds>', 'seconds the old key keeps working (0 = revoke it now)', '3600').option('--json', 'print JSON')
    .action(async (id: string, o: { grace: string; json?: boolean }) => {
      if (!/^\d{1,7}$/.test(o.grace)) throw new ExitError(EXIT.usage, '--grace is a whole number of seconds (0 to 9999999).')
      await withStores(async (s) => {
        const row = (await s.keys.list()).find((k) => k.id === id)
        const rotated = row && (await s.keys.rotate({ orgId: row.orgId, id, graceSeconds: Number(o.grace), actor: OPERATOR }))
        if (!rotated) throw new ExitError(EXIT.failed, 'No active key with that id.')
        print(!!o.json, { id: rotated.info.id, key: rotated.key, replaces: id, grace_seconds: Number(o.grace) },
          `Created key ${rotated.info.id} replacing ${id} (old key works for ${o.grace} s more). It is shown only this once:\n\n  ${rotated.key}\n`)
      })
    })

  program.command('master-key').description('Master key rotation (CRYPTO-2).')
    .command('rewrap').description('Re-wrap every org key still under a TOLLGATE_MASTER_KEY_PREVIOUS key under TOLLGATE_MASTER_KEY (safe while instances that hold both keys serve).')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      await withStores(async (s) => {
        const r = await s.keyring.rewrap()
        await withAudit(s.db.db, (trx) => s.audit.append(trx, { chainId: INSTANCE_CHAIN, actorType: 'operator', actorId: null, action: 'master_key_rewrapped', targetType: 'master_key', targetId: s.keyring.masterKeyId, outcome: 'success' }))
        print(!!o.json, { org_keys: r.orgKeys, instance_keys: r.instanceKeys, remaining: r.remaining, master_key_id: s.keyring.masterKeyId },
          `Re-wrapped ${r.orgKeys} org key(s) and ${r.instanceKeys} instance key(s) under master key ${s.keyring.masterKeyId}; ${r.remaining} left under another key.` +
          (r.remaining === 0 ? ' TOLLGATE_MASTER_KEY_PREVIOUS can now be removed.' : ''))
      })
    })
  program.command('classify').description('Classify JSONL prompts from stdin ({"prompt": "..."} per line) with the embedded classifier; one result per line.')
    .option('--json', 'one JSON object per line').action(async (o: { json?: boolean }) => {
      const classifier = createClassifier({ embedded: { workers: 2 } })
      try {
        const r = await classifyLines(io.stdin ?? process.stdin, classifier, (line) => io.out(line), { json: !!o.json })
        if (r.invalid > 0) exitCode = EXIT.failed
      } finally {
        await classifier.close()
      }
    })

  const limits = program.command('limits').description("Per-org rate-limit tiers (an operator's decision, audited).")
  limits.command('set').description('Set an org\'s per-minute limit for a group (intercept or api).')
    .requiredOption('--org <slug>', 'the org').addOption(new Option('--group <group>', 'the endpoint group').choices(['intercept', 'api']).makeOptionMandatory())
    .requiredOption('--per-minute <n>', 'requests in any 60 s')
    .action(async (o: { org: string; group: TierGroup; perMinute: string }) => {
      if (!/^\d{1,7}$/.test(o.perMinute) || Number(o.perMinute) < 1) throw new ExitError(EXIT.usage, '--per-minute is a whole number from 1 to 9999999.')
      await withStores(async (s) => {
        const target = await s.orgs.bySlug(o.org)
        if (!target) throw new ExitError(EXIT.failed, 'No org with that slug.')
        await tiersOf(s, config()).set(target.id, o.group, Number(o.perMinute), OPERATOR)
        io.out(`Org ${target.slug}: ${o.group} limited to ${o.perMinute} requests in any 60 s.`)
      })
    })
  limits.command('clear').description('Return an org to the instance default for a group.')
    .requiredOption('--org <slug>', 'the org').addOption(new Option('--group <group>', 'the endpoint group').choices(['intercept', 'api']).makeOptionMandatory())
    .action(async (o: { org: string; group: TierGroup }) => {
      await withStores(async (s) => {
        const target = await s.orgs.bySlug(o.org)
        if (!target) throw new ExitError(EXIT.failed, 'No org with that slug.')
        await tiersOf(s, config()).set(target.id, o.group, undefined, OPERATOR)
        io.out(`Org ${target.slug}: ${o.group} back to the instance default.`)
      })
    })
  limits.command('list').description("An org's tiers.").requiredOption('--org <slug>', 'the org').option('--json', 'print JSON')
    .action(async (o: { org: string; json?: boolean }) => {
      await withStores(async (s) => {
        const target = await s.orgs.bySlug(o.org)
        if (!target) throw new ExitError(EXIT.failed, 'No org with that slug.')
        const c = config()
        const tiers = await tiersOf(s, c).list(target.id)
        const rows = (['intercept', 'api'] as const).map((g) => ({ group: g, per_minute: tiers.find((t) => t.group === g)?.perMinute ?? (g === 'intercept' ? c.limits.interceptPerMin : c.limits.apiPerMin), tier: tiers.some((t) => t.group === g) }))
        print(!!o.json, rows, rows.map((r) => `${r.group}\t${r.per_minute}/min${r.tier ? ' (tier)' : ' (default)'}`).join('\n'))
      })
    })

  registerAuditCommands(program, {
    cwd: proc.cwd, config, withStores, out: (t) => io.out(t), print, fail: (code) => { exitCode = code },
  })

  registerBackupCommands(program, {
    cwd: proc.cwd, config, withStores, out: (t) => io.out(t), err: (t) => io.err(t), print, fail: (code) => { exitCode = code }, log: quietLog(io),
  })
  registerPolicyCommands(program, proc, io, (code) => { exitCode = code })
  registerDoctorCommand(program, proc, io, (code) => { exitCode = code })

  try {
    await program.parseAsync([...argv], { from: 'user' })
    return exitCode
  } catch (err) {
    if (err instanceof ExitError) {
      io.err(err.message)
      return err.exitCode
    }
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage
    throw err
  }
}

function tiersOf(s: Stores, c: Config): RateTiers {
  return new RateTiers(s.db.db, s.clock, s.audit, { auth: c.limits.authPerMin, intercept: c.limits.interceptPerMin, api: c.limits.apiPerMin })
}

function quietLog(io: Io) {
  const warn = (_f: unknown, msg: string) => io.err(`warning: ${msg}`)
  return { info() {}, debug() {}, warn, error: warn }
}
