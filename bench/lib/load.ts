/**
 * The load generator: wrk when it is installed (C, cheap on a 2-core box, µs latency resolution),
 * otherwise autocannon from node_modules run as its own process (1 ms latency resolution).
 * Every run is bounded: the process is killed if it outlives its duration by 20 s.
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startChild, stopChild } from './procs.ts'

const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)))
const ROOT = dirname(BENCH_DIR)
const AUTOCANNON = join(ROOT, 'node_modules', 'autocannon', 'autocannon.js')

export type LoadGenName = 'wrk' | 'autocannon'

export interface LoadGen {
  readonly name: LoadGenName
  readonly version: string
  /** Latency resolution, for the report. */
  readonly resolution: string
}

export interface LoadSpec {
  readonly url: string
  readonly bodyFile: string
  readonly headers: Readonly<Record<string, string>>
  readonly connections: number
  readonly durationS: number
}

export interface LoadResult {
  readonly requests: number
  readonly durationS: number
  readonly rps: number
  readonly p50Ms: number
  readonly p90Ms: number | null
  readonly p99Ms: number
  readonly maxMs: number
  /** Connection/read/write errors and timeouts. */
  readonly errors: number
  /** Responses that were not 2xx/3xx. */
  readonly non2xx: number
}

function which(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** wrk if installed (unless BENCH_LOADGEN=autocannon), else autocannon. */
export function pickLoadGen(prefer: string | undefined): LoadGen {
  const wrkOk = which('wrk')
  if (prefer === 'wrk' && !wrkOk) throw new Error('BENCH_LOADGEN=wrk but wrk is not installed (apt-get install -y wrk)')
  if (wrkOk && prefer !== 'autocannon') {
    let version = 'unknown'
    try {
      execFileSync('wrk', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    } catch (err) {
      // `wrk -v` prints its banner and exits 1.
      const out = String((err as { stdout?: string }).stdout ?? '') + String((err as { stderr?: string }).stderr ?? '')
      version = /wrk (\S+)/.exec(out)?.[1] ?? version
    }
    return { name: 'wrk', version, resolution: '1 µs' }
  }
  if (!existsSync(AUTOCANNON)) throw new Error('neither wrk nor node_modules/autocannon is available')
  const version = /autocannon v(\S+)/.exec(execFileSync(process.execPath, [AUTOCANNON, '--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown'
  return { name: 'autocannon', version, resolution: '1 ms (autocannon records whole milliseconds: c=1 deltas are coarse)' }
}

/** Runs one bounded load run against `spec.url`. */
export async function runLoad(gen: LoadGen, spec: LoadSpec): Promise<LoadResult> {
  return gen.name === 'wrk' ? runWrk(spec) : runAutocannon(spec)
}

async function collect(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, limitMs: number): Promise<{ code: number | string; out: string; err: string }> {
  const child = startChild(name, cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  child.proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)))
  let timer: NodeJS.Timeout | undefined
  const code = await Promise.race([
    child.exited,
    new Promise<string>((r) => (timer = setTimeout(() => r('timeout'), limitMs))),
  ])
  clearTimeout(timer)
  if (code === 'timeout') await stopChild(child, 1000)
  return { code, out, err }
}

async function runWrk(spec: LoadSpec): Promise<LoadResult> {
  const headers = Object.entries(spec.headers).map(([k, v]) => `${k}: ${v}`).join('\n')
  const env = { ...process.env, BENCH_BODY_FILE: spec.bodyFile, BENCH_HEADERS: headers }
  const args = ['-t1', `-c${spec.connections}`, `-d${spec.durationS}s`, '--timeout', '5s', '-s', join(BENCH_DIR, 'wrk-post.lua'), spec.url]
  const r = await collect('wrk', 'wrk', args, env, (spec.durationS + 20) * 1000)
  const line = /BENCHJSON (\{.*\})/.exec(r.out)
  if (!line) throw new Error(`wrk produced no result (exit ${r.code}): ${r.err.trim() || r.out.trim()}`)
  const j = JSON.parse(line[1]!) as Record<string, number>
  const durationS = j['duration_us']! / 1e6
  return {
    requests: j['requests']!,
    durationS,
    rps: j['requests']! / durationS,
    p50Ms: j['p50_us']! / 1000,
    p90Ms: j['p90_us']! / 1000,
    p99Ms: j['p99_us']! / 1000,
    maxMs: j['lat_max_us']! / 1000,
    errors: j['err_connect']! + j['err_read']! + j['err_write']! + j['err_timeout']!,
    non2xx: j['err_status']!,
  }
}

async function runAutocannon(spec: LoadSpec): Promise<LoadResult> {
  const args = [AUTOCANNON, '-c', String(spec.connections), '-d', String(spec.durationS), '-m', 'POST', '-t', '5', '-i', spec.bodyFile,
    '-H', 'content-type=application/json', ...Object.entries(spec.headers).flatMap(([k, v]) => ['-H', `${k}=${v}`]), '--json', '-n', spec.url]
  const r = await collect('autocannon', process.execPath, args, process.env, (spec.durationS + 20) * 1000)
  const line = r.out.split('\n').find((l) => l.startsWith('{'))
  if (!line) throw new Error(`autocannon produced no result (exit ${r.code}): ${r.err.trim()}`)
  const j = JSON.parse(line) as {
    requests: { total: number }; duration: number; latency: { p50: number; p90: number; p99: number; max: number }
    errors: number; timeouts: number; non2xx: number
  }
  return {
    requests: j.requests.total,
    durationS: j.duration,
    rps: j.requests.total / j.duration,
    p50Ms: j.latency.p50,
    p90Ms: j.latency.p90,
    p99Ms: j.latency.p99,
    maxMs: j.latency.max,
    errors: j.errors + j.timeouts,
    non2xx: j.non2xx,
  }
}
