/**
 * Reconnect delays: exponential, capped, with jitter ("equal jitter").
 *
 * Attempt n (1-based) waits a random time in [c/2, c] where c = min(max, base * 2^(n-1)):
 * the ceiling doubles per attempt up to the cap, and the random half keeps many clients from
 * reconnecting in lockstep. Safe for any attempt count (no overflow to 0 or NaN, unlike
 * Socket.IO's built-in backoff after ~1000 attempts), so it can run for months.
 */
export function reconnectDelay(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const n = Number.isFinite(attempt) ? Math.max(1, Math.floor(attempt)) : 1
  const base = Math.max(1, baseMs)
  const max = Math.max(base, maxMs)
  const ceiling = Math.min(max, base * 2 ** Math.min(n - 1, 40))
  const r = Math.min(1, Math.max(0, random()))
  return Math.max(1, Math.min(max, Math.round(ceiling / 2 + r * (ceiling / 2))))
}
