import { execFileSync } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import { isAbsolute, join, relative, resolve } from 'node:path'
import type { Command } from 'commander'
import { loadConfig, type Config } from '../config/load.ts'
import { diagnosticFlags } from '../config/process-checks.ts'
import type { Io, ProcessInfo } from './index.ts'

/**
 * `tollgate doctor` (D11): transit-only outside the process. Request text lives only in memory,
 * so everything that copies memory to disk — core dumps, heap snapshots and reports, swap, a
 * reverse proxy that spools bodies to temp files — and everything that exposes the data dir or
 * the traffic is checked on the host, one line per check with how to fix it. It reads; it
 * changes nothing and opens no database.
 */
export type DoctorStatus = 'ok' | 'warn' | 'fail'

export interface DoctorCheck {
  readonly id: string
  readonly status: DoctorStatus
  readonly message: string
  /** How to fix it (for warn and fail). */
  readonly fix?: string
}

/** What the checks read from the host; tests substitute their own. */
export interface DoctorHost {
  /** A file's text, or undefined when it cannot be read. */
  readText(path: string): string | undefined
  /** A path's permission bits and whether it is a directory, or undefined when it does not exist. */
  mode(path: string): { readonly mode: number; readonly dir: boolean } | undefined
  /** `ulimit -c` in a child shell, when /proc is not there. */
  shellCoreLimit(): string | undefined
}

export const realHost: DoctorHost = {
  readText(path) {
    try {
      return readFileSync(path, 'utf8')
    } catch {
      return undefined
    }
  },
  mode(path) {
    try {
      const st = statSync(path)
      return { mode: st.mode & 0o777, dir: st.isDirectory() }
    } catch {
      return undefined
    }
  },
  shellCoreLimit() {
    try {
      return execFileSync('/bin/sh', ['-c', 'ulimit -c'], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    } catch {
      return undefined
    }
  },
}

const octal = (m: number) => `0${m.toString(8).padStart(3, '0')}`

/** RLIMIT_CORE: the soft limit is what a crash of this process (and the server started from this shell) would use. */
export function coreDumpCheck(host: DoctorHost): DoctorCheck {
  const fix = 'disable them for the service: `ulimit -c 0` before starting it, LimitCORE=0 in its systemd unit, or `--ulimit core=0` for docker run'
  const limits = host.readText('/proc/self/limits')
  const line = limits?.split('\n').find((l) => l.startsWith('Max core file size'))
  const soft = line ? line.slice('Max core file size'.length).trim().split(/\s+/)[0] : host.shellCoreLimit()
  if (soft === undefined) return { id: 'core_dumps', status: 'warn', message: 'could not read the core dump limit (no /proc/self/limits, no shell)', fix }
  if (soft === '0') return { id: 'core_dumps', status: 'ok', message: 'core dumps are disabled (RLIMIT_CORE 0)' }
  const pattern = host.readText('/proc/sys/kernel/core_pattern')?.trim()
  return { id: 'core_dumps', status: 'warn', message: `core dumps are enabled (RLIMIT_CORE ${soft}${pattern ? `, core_pattern ${pattern}` : ''}): a crash would write process memory, request text included, to disk`, fix }
}

/** D11: the same flags `serve` refuses (heap snapshots, profiles, reports, the inspector). */
export function diagnosticFlagsCheck(execArgv: readonly string[], nodeOptions: string | undefined): DoctorCheck {
  const flags = diagnosticFlags(execArgv, nodeOptions)
  if (flags.length === 0) return { id: 'diagnostic_flags', status: 'ok', message: 'no Node flag that writes memory to disk (NODE_OPTIONS, command line)' }
  return { id: 'diagnostic_flags', status: 'fail', message: `${flags.join(', ')} would write process memory to disk (the server refuses to start with them)`, fix: 'remove them from NODE_OPTIONS and the node command line' }
}

/** Swap pages memory out to disk; zram stays in memory. */
export function swapCheck(host: DoctorHost): DoctorCheck {
  const fix = 'turn swap off (`swapoff -a` and remove it from /etc/fstab), or put it on dm-crypt with a random key (cryptswap) or zram'
  const swaps = host.readText('/proc/swaps')
  if (swaps !== undefined) {
    const areas = swaps.split('\n').slice(1).map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 4)
    if (areas.length === 0) return { id: 'swap', status: 'ok', message: 'no swap configured' }
    const onDisk = areas.filter((f) => !f[0]!.startsWith('/dev/zram'))
    if (onDisk.length === 0) return { id: 'swap', status: 'ok', message: 'swap is zram only (compressed memory, never written to disk)' }
    const usedKb = onDisk.reduce((n, f) => n + (Number(f[3]) || 0), 0)
    const mapped = onDisk.every((f) => f[0]!.startsWith('/dev/dm-') || f[0]!.startsWith('/dev/mapper/'))
    return { id: 'swap', status: 'warn', message: `swap on ${onDisk.map((f) => f[0]).join(', ')} (${usedKb} kB in use)${mapped ? ' on a device-mapper device: make sure it is dm-crypt' : ': memory, request text included, can be paged to disk unencrypted'}`, fix }
  }
  const meminfo = host.readText('/proc/meminfo')
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(meminfo ?? '')?.[1] ?? NaN)
  const total = kb('SwapTotal')
  if (Number.isNaN(total)) return { id: 'swap', status: 'warn', message: 'could not read /proc/swaps or /proc/meminfo', fix }
  if (total === 0) return { id: 'swap', status: 'ok', message: 'no swap configured' }
  return { id: 'swap', status: 'warn', message: `swap configured (${total} kB, ${total - kb('SwapFree')} kB in use)`, fix }
}

/** The data dir holds the database and (in development) the master key: nobody else may read it. */
export function dataDirCheck(host: DoctorHost, dataDir: string): DoctorCheck[] {
  const fix = `chmod 700 ${dataDir} (and chmod 600 the files in it); run Tollgate as its own user`
  const dir = host.mode(dataDir)
  if (!dir) return [{ id: 'data_dir', status: 'ok', message: `${dataDir} does not exist yet: Tollgate creates it with mode 0700` }]
  if (!dir.dir) return [{ id: 'data_dir', status: 'fail', message: `${dataDir} is not a directory`, fix: 'point TOLLGATE_DATA_DIR at a directory' }]
  const out: DoctorCheck[] = []
  if (dir.mode & 0o007) out.push({ id: 'data_dir', status: 'fail', message: `${dataDir} is open to every user on the host (mode ${octal(dir.mode)})`, fix })
  else if (dir.mode & 0o070) out.push({ id: 'data_dir', status: 'warn', message: `${dataDir} is open to its group (mode ${octal(dir.mode)})`, fix })
  else out.push({ id: 'data_dir', status: 'ok', message: `${dataDir} is private to its owner (mode ${octal(dir.mode)})` })
  for (const name of ['master.key', 'tollgate.db', 'tollgate.db-wal']) {
    const f = host.mode(join(dataDir, name))
    if (f && f.mode & 0o077) out.push({ id: 'data_dir', status: name === 'master.key' ? 'fail' : 'warn', message: `${name} in the data dir is readable by others (mode ${octal(f.mode)})`, fix: `chmod 600 ${join(dataDir, name)}` })
  }
  return out
}

export function masterKeyCheck(config: Config): DoctorCheck {
  if (config.masterKey) return { id: 'master_key', status: 'ok', message: 'TOLLGATE_MASTER_KEY is set' }
  if (config.mode === 'production') return { id: 'master_key', status: 'fail', message: 'production mode without TOLLGATE_MASTER_KEY', fix: 'set TOLLGATE_MASTER_KEY (openssl rand -hex 32) and keep it outside the data dir and its backups' }
  return { id: 'master_key', status: 'ok', message: 'development mode: a master key is generated into the data dir (set TOLLGATE_MASTER_KEY for production)' }
}

/** D13: whether terminating an org reaches its data in older backups (a key vault outside the data dir). */
export function keyVaultCheck(host: DoctorHost, config: Config): DoctorCheck {
  if (config.keyVaultKms) return { id: 'key_vault', status: 'ok', message: `key vault on AWS KMS (${config.keyVaultKms.region}): one KMS key per org, scheduled for deletion at termination` }
  const dir = config.keyVaultDir
  const fix = 'set TOLLGATE_KEY_VAULT_DIR to a 0700 directory outside the data dir and its backups (shared storage with several instances)'
  if (dir === undefined) {
    return config.mode === 'production'
      ? { id: 'key_vault', status: 'warn', message: 'no key vault: terminating an org destroys its keys in the live database only; backups taken before still open them', fix }
      : { id: 'key_vault', status: 'ok', message: 'no key vault (development): crypto-shredding reaches the live database only' }
  }
  const rel = relative(config.storage.dataDir, dir)
  if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))) return { id: 'key_vault', status: 'warn', message: 'the key vault is inside the data dir: a copy of the data dir carries the KEKs along with the database', fix }
  const m = host.mode(dir)
  if (m && m.mode & 0o077) return { id: 'key_vault', status: 'fail', message: `the key vault is open to others (mode ${octal(m.mode)})`, fix: `chmod 700 ${dir}` }
  return { id: 'key_vault', status: 'ok', message: m ? 'key vault configured (TOLLGATE_KEY_VAULT_DIR)' : 'key vault configured; its directory is created with the first org' }
}

export function transportCheck(config: Config): DoctorCheck {
  if (config.server.tls) return { id: 'tls', status: 'ok', message: 'Tollgate terminates TLS itself (TOLLGATE_TLS_CERT/KEY)' }
  if (config.server.publicUrl?.startsWith('https://') || config.limits.trustedProxies.length > 0) {
    return { id: 'tls', status: 'ok', message: `TLS is expected at a reverse proxy (${config.server.publicUrl?.startsWith('https://') ? 'https public URL' : 'trusted proxies configured'})` }
  }
  return {
    id: 'tls', status: config.mode === 'production' ? 'fail' : 'warn', message: 'no TLS: neither TOLLGATE_TLS_CERT/KEY nor an https TOLLGATE_PUBLIC_URL or TOLLGATE_TRUSTED_PROXIES',
    fix: 'set TOLLGATE_TLS_CERT and TOLLGATE_TLS_KEY, or put a TLS proxy in front and set TOLLGATE_PUBLIC_URL=https://… and TOLLGATE_TRUSTED_PROXIES',
  }
}

/**
 * A reverse proxy that buffers bodies spools large ones to temp files (nginx's client_body_temp and
 * proxy_temp) — prompts and answers on disk — and holds SSE streams back. Tollgate sends
 * `X-Accel-Buffering: no` on streams; request buffering is the proxy's own setting.
 */
export function proxyBufferingCheck(config: Config): DoctorCheck {
  const proxied = config.limits.trustedProxies.length > 0 || (config.server.publicUrl?.startsWith('https://') && !config.server.tls)
  const fix = 'nginx: proxy_request_buffering off; proxy_buffering off; proxy_max_temp_file_size 0; (Caddy: flush_interval -1; HAProxy: no option http-buffer-request)'
  if (proxied) return { id: 'proxy_buffering', status: 'warn', message: 'a reverse proxy is in front: make sure it does not spool request or response bodies to disk, and passes SSE through unbuffered (cannot be checked from here)', fix }
  return { id: 'proxy_buffering', status: 'ok', message: 'no reverse proxy configured; if you add one, turn off its body buffering (SSE and transit-only)' }
}

export interface DoctorReport {
  readonly status: DoctorStatus
  readonly checks: readonly DoctorCheck[]
}

/** Every check. A configuration that does not load is itself a failed check; the host checks still run. */
export function doctor(proc: ProcessInfo, host: DoctorHost = realHost): DoctorReport {
  const loaded = loadConfig(proc.env, proc.cwd)
  const checks: DoctorCheck[] = [
    coreDumpCheck(host),
    diagnosticFlagsCheck(proc.execArgv, proc.env['NODE_OPTIONS']),
    swapCheck(host),
  ]
  if (loaded.ok) {
    checks.push(...dataDirCheck(host, loaded.config.storage.dataDir), masterKeyCheck(loaded.config), keyVaultCheck(host, loaded.config), transportCheck(loaded.config), proxyBufferingCheck(loaded.config))
  } else {
    checks.push({ id: 'config', status: 'fail', message: `the configuration has ${loaded.problems.length} problem(s)`, fix: 'run `tollgate serve` or any command to list them, then fix each one' })
    checks.push(...dataDirCheck(host, resolve(proc.cwd, proc.env['TOLLGATE_DATA_DIR']?.trim() || './data')))
  }
  const status: DoctorStatus = checks.some((c) => c.status === 'fail') ? 'fail' : checks.some((c) => c.status === 'warn') ? 'warn' : 'ok'
  return { status, checks }
}

/** One line per check: `ok   id  message`, with ` — fix: …` on warn and fail. */
export function formatDoctor(r: DoctorReport): string {
  return r.checks.map((c) => `${c.status.padEnd(4)}  ${c.id.padEnd(16)}  ${c.message}${c.fix ? ` — fix: ${c.fix}` : ''}`).join('\n')
}

/** Registers `tollgate doctor [--json]`: exit 0 when nothing failed (warnings allowed), 1 otherwise. */
export function registerDoctorCommand(program: Command, proc: ProcessInfo, io: Io, setExit: (code: number) => void, host: DoctorHost = realHost): void {
  program.command('doctor').description('Check the host for what would copy memory to disk or expose data (core dumps, diagnostic flags, swap, data dir, master key, TLS, proxy buffering).')
    .option('--json', 'one JSON object').action((o: { json?: boolean }) => {
      const r = doctor(proc, host)
      io.out(o.json ? JSON.stringify(r) : formatDoctor(r))
      if (r.status === 'fail') setExit(1)
    })
}
