import { inspect } from 'node:util'

/**
 * A credential (provider key, operator secret, master key) as an opaque value: it prints as
 * `[secret]` everywhere. Config parses secrets straight into this type.
 */
export class Secret {
  readonly #value: string

  constructor(value: string) {
    this.#value = value
  }

  reveal(): string {
    return this.#value
  }

  toString(): string {
    return '[secret]'
  }

  toJSON(): string {
    return '[secret]'
  }

  [inspect.custom](): string {
    return '[secret]'
  }
}
