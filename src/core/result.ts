/** A step either continues with a value or stops the request with a `Stop` (not an exception). */
export type Result<T, S> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly stop: S }

export function ok<T>(value: T): { ok: true; value: T } {
  return { ok: true, value }
}

export function stop<S>(s: S): { ok: false; stop: S } {
  return { ok: false, stop: s }
}
