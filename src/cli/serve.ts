import type { AddressInfo } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import type { Config } from '../config/load.ts'
import { diagnosticFlags } from '../config/process-checks.ts'
import { buildDeps } from '../deps.ts'
import { bootstrapOrg } from '../identity/bootstrap.ts'
import { safeError } from '../observe/log.ts'
import { buildServer } from '../server.ts'
import { securityTxtCheck } from '../trust/report.ts'
import type { Io, ProcessInfo } from './index.ts'

export interface ServeProcess extends ProcessInfo {
  /** Resolves with the signal's name when the process is asked to stop. */
  readonly stop?: Promise<string>
}

/** Starts the gateway and runs until `stop`; then finishes in-flight requests and exits 0. */
export async function serve(config: Config, proc: ServeProcess, io: Io): Promise<number> {
  const flags = diagnosticFlags(proc.execArgv, proc.env['NODE_OPTIONS'])
  if (flags.length > 0) {
    io.err(`Tollgate refuses to start with ${flags.join(', ')}: these flags write process memory (and so request content) to disk. Remove them from the command line and NODE_OPTIONS.`)
    return 78
  }
  // Before the worker threads start, so they get it too. V8 reads it at every full collection; a
  // --heap-growing-percent on the node command line (or NODE_OPTIONS) wins.
  const heapFlag = /--heap[-_]growing[-_]percent/
  if (config.server.heapGrowthPercent > 0 && !proc.execArgv.some((a) => heapFlag.test(a)) && !heapFlag.test(proc.env['NODE_OPTIONS'] ?? '')) {
    setFlagsFromString(`--heap-growing-percent=${config.server.heapGrowthPercent}`)
  }
  const deps = await buildDeps(config)
  const app = await buildServer(deps)
  // The classifier's detectors load before the first request, not during it — and so does its
  // model when it is needed (TOLLGATE_CLASSIFIER_MODEL=always, or an active policy that uses it);
  // otherwise the model (~165 MB per worker) loads when a policy first needs it.
  await deps.classifier.ready?.()
  if (deps.classifierModel === 'as_needed' && await deps.policies.anyActiveNeedsModel()) await deps.classifier.loadModel?.()
  await app.listen({ host: config.server.host, port: config.server.port })
  deps.jobs.start()
  const addr = app.server.address() as AddressInfo
  const scheme = config.server.tls ? 'https' : 'http'
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  const configured = deps.providers.configured()
  let orgs = await deps.orgs.list()
  // AUTH-7: a first start on an empty database creates the default org and prints its owner's link.
  const first = orgs.length === 0
    ? await bootstrapOrg({ ...deps, db: deps.db.db }, config.identity.bootstrapOrg, config.identity.bootstrapEmail, { type: 'system', id: null }).catch(async (err: unknown) => {
      // Several instances starting together on an empty database: another one created the org first.
      if ((await deps.orgs.bySlug(config.identity.bootstrapOrg)) !== undefined) return undefined
      throw err
    })
    : undefined
  if (orgs.length === 0) orgs = await deps.orgs.list()
  const securityTxt = securityTxtCheck(deps.trust.security, deps.clock.now())
  deps.log.info({ event: 'sys_startup', host: addr.address, port: addr.port, mode: config.mode, storage: deps.db.dialect, cache: deps.cache.kind, environments: config.server.environments, providers: configured.production }, 'listening')
  io.err([
    `Tollgate listening on ${scheme}://${host}:${addr.port}`,
    `  storage: ${deps.db.dialect === 'sqlite' ? `SQLite at ${deps.db.sqlitePath}` : 'PostgreSQL'}; cache: ${deps.cache.kind}; mode: ${config.mode}`,
    configured.production.length > 0
      ? `  upstream providers: ${configured.production.join(', ')} (production keys)${configured.sandbox.length > 0 ? `; ${configured.sandbox.join(', ')} (sandbox keys)` : '; sandbox keys use the local provider'}`
      : '  no upstream provider configured: requests are answered by the built-in local provider (set ANTHROPIC_API_KEY, OPENAI_API_KEY or GEMINI_API_KEY to reach a real model)',
    `  get a key: npx tollgate keys create --org ${orgs[0]!.slug} --env sandbox`,
    `  mail: ${deps.mail.kind === 'smtp' ? 'SMTP' : 'no TOLLGATE_SMTP_URL set: invites are written to this log instead of being sent'}`,
    // TRUST-1: a missing or soon-stale security.txt is said at start-up too, not only on /trust.
    ...(securityTxt.status === 'ok' ? [] : [`  ${securityTxt.status}: ${securityTxt.detail} (see /trust)`]),
    ...(first ? [
      '',
      `  First start: created org "${config.identity.bootstrapOrg}" with OWNER ${config.identity.bootstrapEmail}. Sign in within 15 minutes (the link works once):`,
      '',
      `    ${first.link}`,
      '',
      '  Then register a passkey on the dashboard. A new link: npx tollgate link --email <owner>',
    ] : []),
  ].join('\n'))

  const signal = await (proc.stop ?? new Promise<string>(() => {}))
  deps.log.info({ event: 'sys_shutdown', signal }, 'shutting down: finishing in-flight requests')
  const timer = setTimeout(() => {
    deps.log.warn({ event: 'sys_shutdown', reason: 'timeout' }, 'shutdown timeout: closing remaining connections')
    app.server.closeAllConnections()
  }, config.server.shutdownTimeoutMs)
  timer.unref()
  // close() ends only the connections idle at that moment; a keep-alive connection whose
  // in-flight response finishes later would hold the shutdown until the timeout. Close each
  // one as soon as it goes idle.
  const idle = setInterval(() => app.server.closeIdleConnections(), 50)
  idle.unref()
  try {
    await app.close()
    await deps.close()
  } catch (err) {
    deps.log.error({ err: safeError(err) }, 'shutdown failed')
    return 1
  } finally {
    clearTimeout(timer)
    clearInterval(idle)
  }
  return 0
}
