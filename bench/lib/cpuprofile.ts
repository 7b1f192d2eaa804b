/**
 * Reads V8 `.cpuprofile` files and says where the time went inside a time window: self time by
 * module (fastify, kysely, better-sqlite3, undici, pino, node core, each Tollgate source file, GC),
 * the top self-time functions, and inclusive time ("anything under") per module and per Tollgate
 * function. Native frames without a script (e.g. better-sqlite3's C++ `run`, `writev`) are
 * charged to the module that called them.
 */
import { readFileSync } from 'node:fs'

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
  readonly columnNumber: number
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: readonly number[]
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[]
  readonly startTime: number
  readonly endTime: number
  readonly samples: readonly number[]
  readonly timeDeltas: readonly number[]
}

export interface Row {
  readonly name: string
  readonly ms: number
  /** Percent of the busy (non-idle) time in the window. */
  readonly pct: number
}

export interface ProfileSummary {
  readonly file: string
  readonly windowMs: number
  readonly busyMs: number
  readonly idleMs: number
  readonly samples: number
  readonly byModuleSelf: Row[]
  readonly byModuleInclusive: Row[]
  readonly topSelf: (Row & { module: string })[]
  readonly tollgateInclusive: Row[]
}

const FASTIFY = /\/node_modules\/(fastify|@fastify\/[^/]+|find-my-way|light-my-request|avvio|fast-json-stringify|secure-json-parse|fast-querystring|toad-cache|rfdc|abstract-logging|process-warning|fast-decode-uri-component|fast-content-type-parse|ret|safe-regex2|json-schema-ref-resolver|fast-uri|ajv[^/]*)\//
const PINO = /\/node_modules\/(pino[^/]*|sonic-boom|thread-stream|fast-redact|quick-format-unescaped|atomic-sleep|on-exit-leak-free|safe-stable-stringify|@pinojs\/[^/]+|slow-redact)\//
const PROM = /\/node_modules\/(prom-client|tdigest|bintrees)\//

/** The module a frame belongs to, from its script URL ('' = native: decided by the caller). */
export function moduleOf(url: string, root: string): string | undefined {
  if (url === '') return undefined
  // undici parses HTTP responses with llhttp compiled to WebAssembly (node:http uses the C++ build).
  if (url.startsWith('wasm://')) return 'undici'
  if (FASTIFY.test(url)) return 'fastify (+ its deps)'
  if (PINO.test(url)) return 'pino'
  if (PROM.test(url)) return 'prom-client'
  if (url.includes('/node_modules/kysely/')) return 'kysely'
  if (url.includes('/node_modules/better-sqlite3')) return 'better-sqlite3'
  if (url.includes('/node_modules/undici/')) return 'undici'
  if (url.includes('/node_modules/tsx/')) return 'tsx (loader)'
  const pkg = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
  if (pkg) return `npm: ${pkg[1]}`
  if (url.startsWith('node:')) {
    const p = url.slice(5)
    if (/^_http_|^http$|internal\/http/.test(p)) return 'node:http'
    if (/internal\/streams|^stream/.test(p)) return 'node:streams'
    if (/^net$|internal\/net|internal\/stream_base_commons|^dgram|internal\/dns/.test(p)) return 'node:net'
    if (/worker|messageport|per_context\/messageport|internal\/event_target/.test(p)) return 'node:worker/messaging, EventTarget'
    if (/crypto/.test(p)) return 'node:crypto'
    if (/timers/.test(p)) return 'node:timers'
    if (/task_queues|promise|async_hooks/.test(p)) return 'node:promises/microtasks'
    if (/^events$|internal\/events/.test(p)) return 'node:events'
    if (/buffer|util|internal\/url|^url$|internal\/validators|internal\/errors/.test(p)) return 'node:buffer/util/url'
    if (/perf_hooks|internal\/perf/.test(p)) return 'node:perf_hooks'
    return 'node: other core'
  }
  const file = url.startsWith('file://') ? decodeURIComponent(url.slice(7)) : url
  if (file.startsWith(`${root}/src/`)) return `tollgate ${file.slice(root.length + 1)}`
  if (file.startsWith(`${root}/bench/`)) return 'bench harness'
  return `other: ${file}`
}

const SPECIAL = new Map<string, string>([
  ['(garbage collector)', 'GC'],
  ['(program)', '(program): V8/native outside JS'],
  ['(root)', '(root)'],
])

function frameLabel(f: CallFrame, root: string): string {
  if (f.url === '') return `${f.functionName || '(anonymous)'} native`
  const file = f.url.replace(`file://${root}/`, '').replace(/^.*\/node_modules\//, '')
  // tsx emits each TypeScript file on one line, so its line numbers say nothing: name + file only.
  const line = f.url.startsWith(`file://${root}/src/`) && f.url.endsWith('.ts') ? '' : `:${f.lineNumber + 1}`
  return `${f.functionName || '(anonymous)'} ${file}${line}`
}

/**
 * Summarizes one profile. `window` (µs, same monotonic clock as process.hrtime) limits it to the
 * load phase; without it the whole profile counts.
 */
export function summarizeProfile(file: string, root: string, window?: { startUs: number; endUs: number }): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map<number, ProfileNode>()
  const parent = new Map<number, number>()
  for (const n of p.nodes) {
    byId.set(n.id, n)
    for (const c of n.children ?? []) parent.set(c, n.id)
  }
  // Module of each node: its own, else (native frames) the nearest caller's.
  const mod = new Map<number, string>()
  const moduleFor = (id: number): string => {
    const hit = mod.get(id)
    if (hit !== undefined) return hit
    const n = byId.get(id)!
    const special = n.callFrame.url === '' ? SPECIAL.get(n.callFrame.functionName) : undefined
    let m = special ?? moduleOf(n.callFrame.url, root)
    if (m === undefined) {
      const up = parent.get(id)
      m = up === undefined ? 'native (no caller)' : moduleFor(up)
      if (m === '(root)') m = `native: ${n.callFrame.functionName || '(anonymous)'}`
    }
    mod.set(id, m)
    return m
  }

  const selfByModule = new Map<string, number>()
  const inclByModule = new Map<string, number>()
  const selfByFrame = new Map<string, { us: number; module: string }>()
  const inclTollgate = new Map<string, number>()
  let busy = 0
  let idle = 0
  let t = p.startTime
  let count = 0
  const fallbackDelta = p.timeDeltas.length > 1 ? p.timeDeltas.slice(1).sort((a, b) => a - b)[Math.floor(p.timeDeltas.length / 2)]! : 1000
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]!
    if (window && (t < window.startUs || t > window.endUs)) continue
    const w = Math.max(0, Math.min(p.timeDeltas[i + 1] ?? fallbackDelta, fallbackDelta * 20))
    const id = p.samples[i]!
    const node = byId.get(id)!
    count++
    if (node.callFrame.functionName === '(idle)') {
      idle += w
      continue
    }
    busy += w
    const m = moduleFor(id)
    selfByModule.set(m, (selfByModule.get(m) ?? 0) + w)
    const label = frameLabel(node.callFrame, root)
    const prev = selfByFrame.get(label)
    selfByFrame.set(label, { us: (prev?.us ?? 0) + w, module: m })
    // Inclusive: every module and Tollgate function on the stack, once per sample.
    const seenMods = new Set<string>()
    const seenFns = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cm = moduleFor(cur)
      if (cm === '(root)') continue
      seenMods.add(cm)
      const cn = byId.get(cur)!
      if (cm.startsWith('tollgate ') && cn.callFrame.url !== '') seenFns.add(frameLabel(cn.callFrame, root))
    }
    for (const sm of seenMods) inclByModule.set(sm, (inclByModule.get(sm) ?? 0) + w)
    for (const sf of seenFns) inclTollgate.set(sf, (inclTollgate.get(sf) ?? 0) + w)
  }
  const rows = (m: Map<string, number>): Row[] => [...m].map(([name, us]) => ({ name, ms: us / 1000, pct: busy > 0 ? (us / busy) * 100 : 0 })).sort((a, b) => b.ms - a.ms)
  return {
    file,
    windowMs: window ? (window.endUs - window.startUs) / 1000 : (p.endTime - p.startTime) / 1000,
    busyMs: busy / 1000,
    idleMs: idle / 1000,
    samples: count,
    byModuleSelf: rows(selfByModule),
    byModuleInclusive: rows(inclByModule),
    topSelf: [...selfByFrame].map(([name, v]) => ({ name, module: v.module, ms: v.us / 1000, pct: busy > 0 ? (v.us / busy) * 100 : 0 })).sort((a, b) => b.ms - a.ms),
    tollgateInclusive: rows(inclTollgate),
  }
}
