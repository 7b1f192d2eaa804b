/**
 * Tollgate instances as child processes: the real `serve` command (`node --import tsx
 * src/main.ts serve`, or the script `entry` names: `BIN` or a compiled `main.js`), each in its own process group (so a stop or a SIGKILL reaches everything
 * it runs, by process-group id, never by name), on a loopback port, with an explicit environment.
 * Each one also preloads exit-with-parent.mjs, which stops it if this process dies first.
 *
 * Used by `npm run instances` (scripts/instances.ts), the crash test (test/crash/) and the
 * several-instances benchmark (bench/instances.ts).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath, pathToFileURL } from 'node:url'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const MAIN = join(ROOT, 'src', 'main.ts')
/** What `npm start` runs: the compiled build when it matches src/, else the sources through tsx (it picks itself). */
export const BIN = join(ROOT, 'bin', 'tollgate.mjs')
/** Stops an instance whose parent died (see exit-with-parent.mjs): no orphans after a harness is killed. */
const EXIT_WITH_PARENT = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), 'exit-with-parent.mjs')).href

/** A SIGKILL'd or exited process: its exit code, or the signal that ended it. */
export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface Instance {
  readonly name: string
  readonly pid: number
  readonly port: number
  /** http://127.0.0.1:<port> */
  readonly url: string
  readonly exited: Promise<Exit>
  /** False once the process has exited. */
  readonly running: boolean
  /** Sends a signal to the instance's process group. */
  signal(sig: NodeJS.Signals): void
  /** `kill -9`: SIGKILL to the process group; resolves once it has exited. */
  kill(): Promise<Exit>
  /** A graceful stop: SIGTERM (Tollgate finishes in-flight requests), SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<Exit>
}

export interface InstanceSpec {
  readonly name: string
  /** The child's whole environment (see `instanceEnv`). */
  readonly env: NodeJS.ProcessEnv
  /** Where the JSON log (stdout) goes: a file (appended), the parent's stdout, or nowhere. Default: nowhere. */
  readonly stdout?: 'ignore' | 'inherit' | { readonly file: string }
  /** Every stderr line (the start banner, errors, the shutdown). */
  readonly onStderr?: (line: string) => void
  /** How long to wait for "Tollgate listening on …" (default 60 s). */
  readonly readyTimeoutMs?: number
  /** Extra node flags before the entry. */
  readonly nodeFlags?: readonly string[]
  /** An entry script to run instead of src/main.ts through tsx: `BIN` (what `npm start` runs) or a compiled `main.js`. */
  readonly entry?: string
}

/** The node arguments that run the CLI: `entry`, or src/main.ts through tsx. */
const entryArgs = (entry: string | undefined): string[] => (entry ? [entry] : ['--import', 'tsx', MAIN])

const live = new Set<Instance>()
let exitHookInstalled = false

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig)
  } catch {
    try {
      process.kill(pid, sig)
    } catch {
      // already gone
    }
  }
}

/**
 * The environment for an instance: this process's environment without anything that could point
 * Tollgate elsewhere (TOLLGATE_*, provider keys and URLs) or turn on diagnostics (NODE_OPTIONS),
 * plus `settings`.
 */
export function instanceEnv(settings: Readonly<Record<string, string | undefined>>, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(base)) {
    if (/^(TOLLGATE_|ANTHROPIC_|OPENAI_|GEMINI_)/.test(k) || k === 'NODE_OPTIONS') continue
    env[k] = v
  }
  for (const [k, v] of Object.entries(settings)) if (v !== undefined) env[k] = v
  return env
}

/** Starts `serve` and resolves once it listens (its banner names the port). Rejects if it exits or times out first. */
export async function startInstance(spec: InstanceSpec): Promise<Instance> {
  if (!exitHookInstalled) {
    exitHookInstalled = true
    // The last resort (an uncaught error in the parent): nothing started here outlives it.
    process.on('exit', () => {
      for (const i of live) signalGroup(i.pid, 'SIGKILL')
    })
  }
  const out = spec.stdout ?? 'ignore'
  const fd = typeof out === 'object' ? openSync(out.file, 'a') : undefined
  let proc: ChildProcess
  try {
    proc = spawn(process.execPath, [...(spec.nodeFlags ?? []), '--import', EXIT_WITH_PARENT, ...entryArgs(spec.entry), 'serve'], {
      cwd: ROOT, env: spec.env, detached: true, stdio: ['ignore', fd ?? out as 'ignore' | 'inherit', 'pipe'],
    })
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
  const pid = proc.pid
  if (pid === undefined) throw new Error(`${spec.name}: could not start node`)
  let running = true
  const exited = new Promise<Exit>((resolve) => {
    proc.once('exit', (code, signal) => {
      running = false
      resolve({ code, signal })
    })
    proc.once('error', () => {
      running = false
      resolve({ code: null, signal: null })
    })
  })

  const port = await new Promise<number>((resolve, reject) => {
    const rl = createInterface({ input: proc.stderr! })
    let settled = false
    const timer = setTimeout(() => finish(() => reject(new Error(`${spec.name}: not listening within ${spec.readyTimeoutMs ?? 60_000} ms`))), spec.readyTimeoutMs ?? 60_000)
    const tail: string[] = []
    function finish(fn: () => void) {
      if (settled) return
      settled = true
      clearTimeout(timer)
      fn()
    }
    rl.on('line', (line) => {
      spec.onStderr?.(line)
      tail.push(line)
      if (tail.length > 20) tail.shift()
      const m = /Tollgate listening on https?:\/\/\S*:(\d+)/.exec(line)
      if (m) finish(() => resolve(Number(m[1])))
    })
    void exited.then((e) => finish(() => reject(new Error(`${spec.name}: exited (${e.code ?? e.signal}) before listening:\n${tail.join('\n')}`))))
  }).catch(async (err: unknown) => {
    signalGroup(pid, 'SIGKILL')
    await exited
    throw err
  })

  const stop = async (graceMs = 30_000): Promise<Exit> => {
    if (!running) return exited
    signalGroup(pid, 'SIGTERM')
    let timer: NodeJS.Timeout | undefined
    const late = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs)))])
    clearTimeout(timer)
    if (late) signalGroup(pid, 'SIGKILL')
    return exited
  }
  const instance: Instance = {
    name: spec.name, pid, port, url: `http://127.0.0.1:${port}`, exited,
    get running() {
      return running
    },
    signal: (sig) => {
      if (running) signalGroup(pid, sig)
    },
    kill: async () => {
      if (running) signalGroup(pid, 'SIGKILL')
      return exited
    },
    stop,
  }
  live.add(instance)
  void exited.then(() => live.delete(instance))
  return instance
}

export interface CliResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export interface CliRun {
  readonly pid: number
  readonly done: Promise<CliResult>
  /** SIGKILL (the crash test kills CLI writes mid-way too). */
  kill(): void
}

/** Runs the `tollgate` CLI (`node --import tsx src/main.ts …`, or `node <entry> …`) as a child process. */
export function startCli(args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000, entry?: string): CliRun {
  const child = execFile(process.execPath, [...entryArgs(entry), ...args], { cwd: ROOT, env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20 })
  const done = new Promise<CliResult>((resolve) => {
    let stdout = ''
    let stderr = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
  return {
    pid: child.pid ?? -1,
    done,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    },
  }
}

/** Runs a CLI command that must succeed; returns its stdout. */
export async function cli(args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000, entry?: string): Promise<string> {
  const r = await startCli(args, env, timeoutMs, entry).done
  if (r.code !== 0) throw new Error(`tollgate ${args.slice(0, 2).join(' ')} failed (${r.code ?? r.signal}): ${r.stderr.trim()}`)
  return r.stdout
}

export interface SeveralOptions {
  readonly count: number
  /** One port per instance; 0 picks a free one. */
  readonly ports: readonly number[]
  readonly databaseUrl: string
  readonly redisUrl: string
  readonly masterKey: string
  /** Further settings for every instance (TOLLGATE_LIMIT_*, providers, …). */
  readonly settings?: Readonly<Record<string, string | undefined>>
  readonly stdout?: InstanceSpec['stdout'] | ((name: string) => InstanceSpec['stdout'])
  readonly onStderr?: (name: string, line: string) => void
  readonly nodeFlags?: readonly string[]
  /** The entry for the instances and the migration (`BIN`: what `npm start` runs); default src/main.ts through tsx. */
  readonly entry?: string
}

/** A free loopback port, chosen before an instance starts: its origin (redirect URIs, WebAuthn, CSRF, printed links) must name its real port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

export const instanceName = (i: number): string => String.fromCharCode(65 + (i % 26)) + (i >= 26 ? String(Math.floor(i / 26)) : '')

/** The settings of instance `i` of several sharing one PostgreSQL database and one Redis. */
export function severalSettings(o: SeveralOptions, i: number): Record<string, string | undefined> {
  return {
    TOLLGATE_HOST: '127.0.0.1',
    TOLLGATE_PORT: String(o.ports[i] ?? 0),
    TOLLGATE_DATABASE_URL: o.databaseUrl,
    TOLLGATE_REDIS_URL: o.redisUrl,
    TOLLGATE_MASTER_KEY: o.masterKey,
    ...o.settings,
  }
}

/**
 * N instances on one PostgreSQL database and one Redis: the schema is migrated once with the CLI
 * (`tollgate migrate`), then every instance starts at the same time. If one fails to start, the
 * others are stopped and the error is thrown.
 */
export async function startSeveral(o: SeveralOptions): Promise<Instance[]> {
  const envOf = (i: number) => instanceEnv(severalSettings(o, i))
  await cli(['migrate'], envOf(0), undefined, o.entry)
  const started = await Promise.allSettled(Array.from({ length: o.count }, (_, i) => {
    const name = instanceName(i)
    const stdout = typeof o.stdout === 'function' ? o.stdout(name) : o.stdout
    return startInstance({
      name, env: envOf(i),
      ...(stdout ? { stdout } : {}),
      ...(o.onStderr ? { onStderr: (l: string) => o.onStderr!(name, l) } : {}),
      ...(o.nodeFlags ? { nodeFlags: o.nodeFlags } : {}),
      ...(o.entry ? { entry: o.entry } : {}),
    })
  }))
  const ok = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []))
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected')
  if (failed) {
    await Promise.all(ok.map((i) => i.stop(10_000)))
    throw failed.reason
  }
  return ok
}
