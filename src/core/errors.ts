/**
 * The one table of error codes: code → HTTP status and the public message. A client only ever
 * sees a code and its message from this table (in its API's own error shape), never text built
 * from the request, an upstream body, SQL or a stack.
 */
export const ERRORS = {
  invalid_request: { status: 400, message: 'The request is malformed or missing a required field.' },
  invalid_json: { status: 400, message: 'The request body is not valid JSON.' },
  json_too_deep: { status: 400, message: 'The request body nests objects and arrays deeper than this server accepts.' },
  attachment_rejected: { status: 400, message: 'An attachment is malformed, too large, or of an unsupported type.' },
  not_translatable: { status: 400, message: 'This request uses features (tools, remote images, several choices) that only pass through to a provider of the same API format.' },
  invalid_api_key: { status: 401, message: 'The API key is missing, invalid or revoked.' },
  invalid_operator_secret: { status: 401, message: 'The X-Backup-Secret header is missing or wrong.' },
  not_implemented: { status: 501, message: 'Not implemented yet.' },
  backup_unavailable: { status: 503, message: 'Backups are off on this instance: set TOLLGATE_BACKUP_KEY.' },
  backup_failed: { status: 500, message: 'The backup did not complete; no older backup was deleted. The request id identifies it in the server log.' },
  unauthenticated: { status: 401, message: 'Sign in first: no valid session or admin key was presented.' },
  sign_in_failed: { status: 401, message: 'Sign-in failed. Start again from the sign-in page.' },
  csrf_rejected: { status: 403, message: 'This cross-site or token-less request was refused.' },
  step_up_required: { status: 403, message: 'This action needs a fresh authentication (a passkey or a new sign-in) within the step-up window.' },
  environment_not_served: { status: 403, message: "This instance does not serve the key's environment." },
  forbidden: { status: 403, message: 'This credential may not perform this action.' },
  workspace_disabled: { status: 403, message: "This org has not turned on the workspace: an OWNER can enable it in the org settings (workspace). Reports of harmful output work without it." },
  blocked_by_policy: { status: 403, message: "The org's policy does not allow this request." },
  output_blocked: { status: 403, message: "The org's policy does not allow the model's answer to this request." },
  not_found: { status: 404, message: 'No such resource.' },
  challenge_not_found: { status: 404, message: 'No such challenge is held: it was answered, ran out of attempts, or belongs to another key. Send the original request again.' },
  model_not_found: { status: 404, message: 'No provider serves the requested model.' },
  challenge_elsewhere: { status: 421, message: 'This challenge is held by another Tollgate instance: send every turn of a conversation to the same instance (sticky routing), or send the original request again.' },
  method_not_allowed: { status: 405, message: 'This method is not allowed on this resource.' },
  conflict: { status: 409, message: 'The request conflicts with the current state of the resource.' },
  idempotency_in_flight: { status: 409, message: 'A request with this Idempotency-Key is still being processed; retry after it completes.' },
  idempotency_key_invalid: { status: 400, message: 'The Idempotency-Key header must be 1-255 printable characters (an RFC 9651 string or a plain token).' },
  idempotency_conflict: { status: 422, message: 'This Idempotency-Key was already used for a different request.' },
  last_owner: { status: 409, message: 'An org must keep at least one OWNER: promote another member first.' },
  account_last_owner: { status: 409, message: 'You are the last OWNER of an org that has other members: make another member OWNER, or terminate the org, before deleting your account.' },
  confirmation_mismatch: { status: 400, message: 'The confirmation does not name this org: send its slug as `confirm`.' },
  gone: { status: 410, message: 'This link or invite has expired or was already used.' },
  challenge_expired: { status: 410, message: 'This challenge expired and its request was dropped; send the original request again.' },
  request_timeout: { status: 408, message: 'The request took too long to arrive.' },
  payload_too_large: { status: 413, message: 'The request body is larger than this server accepts.' },
  text_too_large: { status: 413, message: 'The text is longer than Tollgate stores: an artifact holds at most 64 KiB, a report 16 KiB (UTF-8).' },
  headers_too_large: { status: 431, message: 'The request headers are larger than this server accepts.' },
  unsupported_media_type: { status: 415, message: 'Send the request body as application/json.' },
  rate_limited: { status: 429, message: 'Too many requests; retry after the time in Retry-After.' },
  rate_limit_unavailable: { status: 503, message: 'Sign-in is paused while the rate-limit store is unreachable; retry shortly.' },
  upstream_rejected_request: { status: 400, message: 'The upstream provider rejected the request.' },
  upstream_model_not_found: { status: 404, message: 'The upstream provider does not serve the requested model.' },
  upstream_payload_too_large: { status: 413, message: 'The upstream provider rejected the request as too large.' },
  upstream_rate_limited: { status: 429, message: 'The upstream provider is rate limiting requests; retry later.' },
  upstream_auth_failed: { status: 502, message: 'The gateway could not authenticate to the upstream provider.' },
  upstream_unavailable: { status: 502, message: 'The upstream provider failed or is overloaded.' },
  upstream_unreachable: { status: 502, message: 'The upstream provider could not be reached.' },
  upstream_invalid_response: { status: 502, message: 'The upstream provider sent a response the gateway could not read.' },
  upstream_timeout: { status: 504, message: 'The upstream provider did not answer in time.' },
  not_ready: { status: 503, message: 'The gateway is not ready.' },
  shutting_down: { status: 503, message: 'The gateway is shutting down; retry on another instance.' },
  storage_unavailable: { status: 503, message: 'The gateway could not record this request durably, so it did not complete it; retry later.' },
  internal_error: { status: 500, message: 'Internal error. The request id identifies it in the server log.' },
} as const satisfies Record<string, { status: number; message: string }>

export type ErrorCode = keyof typeof ERRORS

/** Facts for the log only: ids, counts, lengths and codes — never request text. */
export type LogDetail = Record<string, string | number | boolean | undefined>

/** A failure with a public code. `detail` goes to the log; the client sees only the code's table entry. */
export class TollgateError extends Error {
  readonly code: ErrorCode
  readonly detail: LogDetail | undefined
  /** Which field was wrong, as a path of schema names and indexes (`messages[2].content`): safe to show. */
  readonly param: string | undefined
  /** Response headers that go with this error (e.g. Retry-After). */
  readonly headers: Readonly<Record<string, string>> | undefined

  constructor(code: ErrorCode, detail?: LogDetail, param?: string, headers?: Readonly<Record<string, string>>) {
    super(code)
    this.name = 'TollgateError'
    this.code = code
    this.detail = detail
    this.param = param
    this.headers = headers
  }

  get status(): number {
    return ERRORS[this.code].status
  }
}

export function statusOf(code: ErrorCode): number {
  return ERRORS[code].status
}
