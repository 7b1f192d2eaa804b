import { ERRORS, type ErrorCode } from '../../core/errors.ts'
import { REASON } from './wire.ts'

/** An error's public message: the table's text, plus the field path or the policy reason code — never input. */
export function errorMessage(code: ErrorCode, param?: string, reason?: string): string {
  let m: string = ERRORS[code].message
  if (param) m += ` (${param})`
  if (reason && REASON.test(reason)) m += ` (reason: ${reason})`
  return m
}
