/**
 * How many AI requests this instance is answering right now. The decision writer commits a record
 * on the calling thread only while one request is in flight (`DecisionWriter`'s `alone`).
 */
export class InFlight {
  #count = 0

  get count(): number {
    return this.#count
  }

  /** Counts `fn`'s request from its start until it settles, however it ends. */
  async around(fn: () => Promise<void>): Promise<void> {
    this.#count++
    try {
      await fn()
    } finally {
      this.#count--
    }
  }
}
