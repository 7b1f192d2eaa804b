// Child of lazy-deps.test.ts: builds the server as `serve` does (SQLite, memory cache, defaults),
// then prints which npm packages the main thread loaded — before and after one in-process name
// search (the positive control: that one must load compromise).
import Module, { register } from 'node:module'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MessageChannel } from 'node:worker_threads'

const seen = new Set<string>()
const pkg = (path: string) => /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path)?.[1]
// ESM loads, seen by a resolve hook (it runs on the loader thread and reports over a port).
const { port1, port2 } = new MessageChannel()
port1.on('message', (url: string) => {
  const p = pkg(url)
  if (p) seen.add(p)
})
port1.unref()
const HOOKS = 'let port; export function initialize(d) { port = d.port } export async function resolve(s, c, next) { const r = await next(s, c); port.postMessage(r.url); return r }'
register(`data:text/javascript,${encodeURIComponent(HOOKS)}`, { parentURL: import.meta.url, data: { port: port2 }, transferList: [port2] })
// CommonJS loads (require, createRequire, and CommonJS imported from ESM) are in the module cache.
const loaded = async () => {
  await new Promise((r) => setTimeout(r, 200)) // the hook's last messages
  for (const file of Object.keys((Module as unknown as { _cache: Record<string, unknown> })._cache)) {
    const p = pkg(file)
    if (p) seen.add(p)
  }
  return [...seen].sort()
}

const dir = mkdtempSync(join(tmpdir(), 'tollgate-lazy-'))
try {
  const { loadConfig } = await import('../../src/config/load.ts')
  const { buildDeps } = await import('../../src/deps.ts')
  const { buildServer } = await import('../../src/server.ts')
  const loadedConfig = loadConfig({ TOLLGATE_DATA_DIR: dir, TOLLGATE_MASTER_KEY: 'a'.repeat(64), TOLLGATE_LOG_LEVEL: 'silent' }, process.cwd())
  if (!loadedConfig.ok) throw new Error('config')
  const deps = await buildDeps(loadedConfig.config)
  const app = await buildServer(deps)
  await app.ready()
  await deps.classifier.ready?.()
  const atStart = await loaded()
  const { findPeople } = await import('../../src/classify/pii.ts')
  findPeople('Please write to Mr. John Smith.')
  const afterNames = await loaded()
  process.stdout.write(`${JSON.stringify({ atStart, afterNames })}\n`)
  await app.close()
  await deps.classifier.close?.()
  await deps.close()
} finally {
  rmSync(dir, { recursive: true, force: true })
}
