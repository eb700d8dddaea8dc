/** Sleeping and retry delays of the ilink puppet (never a tight loop). */
import { reconnectDelay } from '../../backoff.js'
import { ILinkError } from './errors.js'

/** Resolves after `ms`, or rejects with an ILinkError `aborted` as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new ILinkError('stopped', { code: 'aborted', endpoint: 'sleep' }))
      return
    }
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(new ILinkError('stopped', { code: 'aborted', endpoint: 'sleep' }))
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, Math.max(0, ms))
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Delay before retry number `attempt` (1-based) of a failing call: exponential from `baseMs`,
 * capped at `maxMs`, with "equal jitter" (a random point in the upper half), so it is never
 * below `baseMs / 2` and never above `maxMs`.
 */
export function retryDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  return reconnectDelay(attempt, baseMs, maxMs, random)
}
