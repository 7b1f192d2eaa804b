import { readFile } from 'node:fs/promises'
import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { Option, type Command } from 'commander'
import type { Classifier } from '../classify/facts.ts'
import type { Environment } from '../core/model.ts'
import { ROLES } from '../orgs/rbac.ts'
import { COHORT } from '../policy/document.ts'
import { dryRun, type Sample } from '../policy/dry-run.ts'
import { validatePolicy, type PolicyProblem } from '../policy/validate.ts'

export interface PolicyCliIo {
  out(text: string): void
  err(text: string): void
}

/** What `tollgate policy` needs from the process: where samples come from and how prompts are classified. */
export interface PolicyCliProcess {
  readonly cwd: string
  /** Samples when no --samples file is given (process.stdin when absent). */
  readonly stdin?: Readable
  /** Classifies prompt lines; without one, only facts lines can be tested. */
  readonly classifier?: Classifier | (() => Promise<Classifier>)
}

const MAX_LINE = 1 << 20

/**
 * `tollgate policy test <file.json> [--samples <file.jsonl>]`: validates a policy document and
 * dry-runs it on samples, one JSON object per line (stdin by default):
 *
 *   {"prompt": "…", "role": "ANALYST", "cohorts": ["students"]}     classified in memory
 *   {"facts": {"domain": "medical", "pii": [{"kind": "US_SSN"}]}}    facts given directly
 *
 * Output, stable: exactly one JSON line per non-blank input line, in order —
 *   {"line":N,"decision":{action,rule_id,reason,redact,shadow,failed_detectors,output},"facts":{…},"policy_ms":0.004}
 *   {"line":N,"problems":[{"path","message"}]}   (a malformed line; the exit status is then 1)
 * Prompts are never printed or written anywhere. An invalid policy prints each problem as
 * `<path>: <message>` on stderr and exits 1 without reading any sample. Nothing touches the database.
 */
export function registerPolicyCommands(program: Command, proc: PolicyCliProcess, io: PolicyCliIo, exit: (code: number) => void): void {
  const policy = program.command('policy').description('Policy documents: validate and dry-run them offline.')
  policy.command('test <file>').description('Validate a policy document and print the decision for each sample line (JSON lines: {"prompt": …} or {"facts": …}).')
    .option('--samples <file>', 'read samples from this JSON-lines file instead of stdin')
    .addOption(new Option('--env <environment>', 'the environment the samples are evaluated for').choices(['sandbox', 'production']).default('sandbox'))
    .action(async (file: string, o: { samples?: string; env: Environment }) => {
      let raw: unknown
      try {
        raw = JSON.parse(await readFile(resolvePath(proc.cwd, file), 'utf8'))
      } catch (err) {
        io.err(`${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : err instanceof SyntaxError ? 'not valid JSON' : 'cannot be read'}`)
        return exit(1)
      }
      const v = validatePolicy(raw)
      if (!v.ok) {
        io.err(`${file}: the policy has ${v.problems.length} problem(s):`)
        for (const p of v.problems) io.err(`  ${p.path}: ${p.message}`)
        return exit(1)
      }
      const input = o.samples !== undefined ? createReadStream(resolvePath(proc.cwd, o.samples)) : (proc.stdin ?? process.stdin)
      let classifier: Classifier | undefined
      let failed = false
      try {
        let n = 0
        for await (const line of createInterface({ input, crlfDelay: Infinity })) {
          n++
          if (line.trim() === '') continue
          const sample = parseSample(line)
          if (!sample.ok) {
            failed = true
            io.out(JSON.stringify({ line: n, problems: sample.problems }))
            continue
          }
          if (sample.value.prompt !== undefined && classifier === undefined && proc.classifier !== undefined) {
            classifier = typeof proc.classifier === 'function' ? await proc.classifier() : proc.classifier
          }
          const run = await dryRun(v.doc, [sample.value], o.env, classifier)
          if (run.ok) {
            const r = run.results[0]!
            io.out(JSON.stringify({ line: n, decision: r.decision, facts: r.facts, policy_ms: r.policy_ms }))
          } else {
            failed = true
            const problems = 'problems' in run
              ? run.problems.map((p) => ({ path: p.path.replace(/^\$\.samples\[0\]/, '$'), message: p.message }))
              : [{ path: '$.prompt', message: 'no classifier is available to this command: give facts instead ({"facts": {…}})' }]
            io.out(JSON.stringify({ line: n, problems }))
          }
        }
      } catch (err) {
        io.err(`${o.samples ?? 'stdin'}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : 'cannot be read'}`)
        failed = true
      } finally {
        if (classifier !== undefined && typeof proc.classifier === 'function') await classifier.close()
      }
      if (failed) exit(1)
    })
}

function resolvePath(cwd: string, p: string): string {
  return p.startsWith('/') ? p : `${cwd}/${p}`
}

/** One sample line: checked field by field, with paths; the prompt itself is never echoed. */
function parseSample(line: string): { ok: true; value: Sample } | { ok: false; problems: PolicyProblem[] } {
  if (line.length > MAX_LINE) return { ok: false, problems: [{ path: '$', message: `a line may be at most ${MAX_LINE} characters` }] }
  let raw: unknown
  try {
    raw = JSON.parse(line)
  } catch {
    return { ok: false, problems: [{ path: '$', message: 'is not valid JSON' }] }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, problems: [{ path: '$', message: 'must be an object' }] }
  const o = raw as Record<string, unknown>
  const problems: PolicyProblem[] = []
  const allowed = ['prompt', 'facts', 'role', 'cohorts']
  for (const k of Object.keys(o)) if (!allowed.includes(k)) problems.push({ path: /^[A-Za-z0-9_]{1,64}$/.test(k) ? `$.${k}` : '$', message: `is not a known field (allowed: ${allowed.join(', ')})` })
  if ((o['prompt'] === undefined) === (o['facts'] === undefined)) problems.push({ path: '$', message: 'must have either prompt or facts' })
  if (o['prompt'] !== undefined && (typeof o['prompt'] !== 'string' || o['prompt'].length === 0)) problems.push({ path: '$.prompt', message: 'must be a non-empty string' })
  if (o['role'] !== undefined && o['role'] !== null && !(typeof o['role'] === 'string' && (ROLES as readonly string[]).includes(o['role']))) problems.push({ path: '$.role', message: `must be one of: ${ROLES.join(', ')}` })
  const cohorts = o['cohorts']
  if (cohorts !== undefined) {
    if (!Array.isArray(cohorts) || cohorts.length > 64) problems.push({ path: '$.cohorts', message: 'must be a list of at most 64 cohort ids' })
    else cohorts.forEach((c, i) => {
      if (typeof c !== 'string' || !COHORT.test(c)) problems.push({ path: `$.cohorts[${i}]`, message: 'must be a cohort id: 1-64 characters, lowercase letters, digits, _ . and -' })
    })
  }
  if (problems.length > 0) return { ok: false, problems }
  return {
    ok: true,
    value: {
      ...(typeof o['prompt'] === 'string' ? { prompt: o['prompt'] } : {}),
      ...(o['facts'] !== undefined ? { facts: o['facts'] } : {}),
      role: (o['role'] as string | null | undefined) ?? null,
      cohorts: (cohorts as string[] | undefined) ?? [],
    },
  }
}
