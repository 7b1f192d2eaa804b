import { runCli } from './cli/index.ts'

// The process entry: the only file that reads process.env or calls process.exit.
const stop = new Promise<string>((resolve) => {
  let asked = false
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      if (asked) process.exit(1) // a second signal: stop now
      asked = true
      resolve(sig)
    })
  }
})

const code = await runCli(process.argv.slice(2), { env: process.env, execArgv: process.execArgv, cwd: process.cwd(), stop }, {
  out: (s) => process.stdout.write(`${s}\n`),
  err: (s) => process.stderr.write(`${s}\n`),
}).catch((err: unknown) => {
  process.stderr.write(`tollgate: ${(err as { code?: string }).code ?? 'error'}: the command failed. ${err instanceof Error && !(err as { code?: string }).code ? err.message : ''}\n`)
  return 1
})
// Let pending output flush, then exit with the command's status.
process.exitCode = code
if (process.argv[2] !== 'serve') setImmediate(() => process.exit(code))
else process.exit(code)
