import { createPublicKey, type KeyObject } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { finished } from 'node:stream/promises'
import type { Command } from 'commander'
import { verifyChains } from '../audit/audit.ts'
import { AuditSigner, exportAudit, verifyExport } from '../audit/checkpoints.ts'
import type { Config } from '../config/load.ts'
import type { Stores } from '../deps.ts'

export interface AuditCliContext {
  readonly cwd: string
  config(): Config
  withStores<T>(fn: (s: Stores) => Promise<T>): Promise<T>
  out(text: string): void
  print(json: boolean, value: unknown, text: string): void
  fail(code: number): void
}

/**
 * `tollgate audit …` (AUDIT-3, D9):
 *   verify                                  walk the database's chains (as before)
 *   verify --export F --public-key K…       verify an export OFFLINE: no database, only public keys
 *          [--checkpoints C]                 …and checkpoints exported earlier and kept elsewhere
 *   export [--org slug] [--out F]           entries + signed checkpoints as JSON lines
 *   public-key                              this instance's checkpoint public key (PEM), for auditors
 *   rotate-key                              a new signing key; the old public key is kept beside it
 */
export function registerAuditCommands(program: Command, c: AuditCliContext): void {
  const audit = program.command('audit').description('The tamper-evident audit log: hash chains with signed checkpoints.')
  audit.command('verify').description('Walk every hash chain in the database; or, with --export, verify an export offline with only public keys.')
    .option('--export <file>', 'an export written by `tollgate audit export` (verified offline, without the database)')
    .option('--public-key <file...>', 'PEM public key(s) whose checkpoint signatures are trusted (every key ever used)')
    .option('--checkpoints <file>', 'checkpoints exported earlier and kept elsewhere (catches a rollback)')
    .option('--json', 'print JSON')
    .action(async (o: { export?: string; publicKey?: string[]; checkpoints?: string; json?: boolean }) => {
      if (o.export === undefined) {
        await c.withStores(async (s) => {
          const reports = await verifyChains(s.db.db)
          const broken = reports.filter((r) => r.broken)
          c.print(!!o.json, reports, reports.map((r) => r.broken ? `${r.chainId}: BROKEN at seq ${r.broken.seq}: ${r.broken.reason}` : `${r.chainId}: ok (${r.entries} entries)`).join('\n') || 'The audit log is empty.')
          if (broken.length > 0) c.fail(1)
        })
        return
      }
      if (!o.publicKey || o.publicKey.length === 0) {
        c.out('audit verify --export needs --public-key <file> (every checkpoint key ever used)')
        return c.fail(2)
      }
      const keys: KeyObject[] = []
      for (const f of o.publicKey) keys.push(createPublicKey(await readFile(resolve(c.cwd, f), 'utf8')))
      const lines = (await readFile(resolve(c.cwd, o.export), 'utf8')).split('\n')
      const trusted = o.checkpoints ? (await readFile(resolve(c.cwd, o.checkpoints), 'utf8')).split('\n') : []
      const r = verifyExport(lines, keys, trusted)
      c.print(!!o.json, r, r.ok
        ? `ok: ${r.chains} chain(s), ${r.entries} entries, ${r.checkpoints} signed checkpoint(s) verified${trusted.length > 0 ? ', consistent with the trusted checkpoints' : ''}`
        : `FAILED: ${r.problem}`)
      if (!r.ok) c.fail(1)
    })

  audit.command('export').description('Write every audit entry and signed checkpoint as JSON lines (stdout, or --out).')
    .option('--org <slug>', 'only this org\'s chain')
    .option('--checkpoints-only', 'only the checkpoints (to keep elsewhere: `verify --checkpoints`)')
    .option('--out <file>', 'write to this file (created 0600) instead of stdout')
    .action(async (o: { org?: string; out?: string; checkpointsOnly?: boolean }) => {
      await c.withStores(async (s) => {
        let chain: string | undefined
        if (o.org !== undefined) {
          const org = await s.orgs.bySlug(o.org)
          if (!org) {
            c.out(`no org with slug ${o.org}`)
            return c.fail(1)
          }
          chain = org.id
        }
        const out = o.out ? createWriteStream(resolve(c.cwd, o.out), { mode: 0o600 }) : undefined
        for await (const line of exportAudit(s.db.db, s.clock, chain)) {
          if (o.checkpointsOnly && line.startsWith('{"type":"entry"')) continue
          if (out) out.write(`${line}\n`)
          else c.out(line)
        }
        if (out) {
          out.end()
          await finished(out)
        }
      })
    })

  audit.command('public-key').description("Print this instance's checkpoint public key (PEM) and its key id.")
    .action(() => {
      const signer = AuditSigner.fromFile(c.config().audit.signingKeyFile)
      c.out(`# key id ${signer.keyId}\n${signer.publicPem().trimEnd()}`)
    })

  audit.command('rotate-key').description('Replace the checkpoint signing key; the old public key is kept beside the key file. Restart the server afterwards.')
    .action(() => {
      const r = AuditSigner.rotate(c.config().audit.signingKeyFile)
      c.out(`retired key ${r.retired.keyId}: its public key is in ${r.retired.file} (keep it: older checkpoints verify with it)\nnew key ${r.current.keyId}:\n${r.current.publicPem().trimEnd()}`)
    })
}
