/**
 * Stops a snippet that never yields (`while (true) {}`): the executor's timeout is a timer, and
 * a timer cannot fire while the event loop is blocked, so without this one such snippet stalls
 * the bot for good (no events, no other calls, no heartbeats).
 *
 * A worker thread watches the main thread through a SharedArrayBuffer: the main thread stamps
 * the time every 100 ms and notes the deadline of every snippet call in flight, and whether a
 * snippet's synchronous part is running right now. When the loop is blocked and
 *
 * - a snippet's synchronous part is running past its deadline (exact), or
 * - a snippet call is past its deadline by `graceMs` and the loop has been blocked for
 *   `stallMs` (a loop after an `await`: the likeliest culprit, though not proven),
 *
 * the worker asks V8, through the inspector (`Runtime.terminateExecution`, the one inspector
 * command that interrupts running JavaScript), to stop the JavaScript that is running. The loop
 * goes on; the stopped call's timer then answers `timeout`, saying the snippet was stopped.
 *
 * Why not `vm` with `timeout`: it interrupts only the synchronous part of a call, and it starts a
 * thread per call (measured: ~180 µs per call against ~1 µs, more than an exec costs in all).
 *
 * Limits: the executor starts every snippet in a microtask, so a stop lands in a microtask, which
 * Node survives; the microtasks queued behind it in the same turn are dropped. A snippet that
 * blocks inside its own timer or I/O callback is stopped too, but Node then aborts the process
 * (its async-hooks stack no longer matches): the client exits 1 and its outbox file keeps every
 * event. Native code that never returns to JavaScript cannot be stopped.
 */
import { Worker } from 'node:worker_threads'
import type { Logger } from './log.js'

/** Float64 slots of the shared buffer. */
const TICK = 0
const SYNC_DEADLINE = 1
const SYNC_CALL = 2
const EARLIEST_DEADLINE = 3
const EARLIEST_CALL = 4
const STOPPED_CALL = 5
const STOPPED_AFTER_MS = 6
const SLOTS = 7
/** Int32 slot (after the Float64 ones): how many times the worker stopped the main thread. */
const STOPS = SLOTS * 2

const TICK_MS = 100

export interface WatchdogOptions {
  log: Logger
  /** The loop must have been blocked this long before a snippet past its deadline is stopped on suspicion (default 3000). */
  stallMs?: number
  /** A call must be this far past its deadline before it is suspected (default 1000). */
  graceMs?: number
  /** Prefix of the worker's own log lines (it writes to stderr itself: the main thread is stuck). */
  logPrefix?: string
}

const WORKER_SOURCE = `
const { Session } = require('node:inspector')
const { writeSync } = require('node:fs')
const { workerData } = require('node:worker_threads')
const f64 = new Float64Array(workerData.buffer, 0, ${SLOTS})
const i32 = new Int32Array(workerData.buffer)
const session = new Session()
session.connectToMainThread()
let armed = true
setInterval(() => {
  const now = Date.now()
  const blocked = now - f64[${TICK}]
  if (blocked < 3 * ${TICK_MS}) { armed = true; return }
  if (!armed) return
  let call = 0
  if (f64[${SYNC_CALL}] > 0 && now >= f64[${SYNC_DEADLINE}]) call = f64[${SYNC_CALL}]
  else if (f64[${EARLIEST_CALL}] > 0 && now >= f64[${EARLIEST_DEADLINE}] + workerData.graceMs && blocked >= workerData.stallMs) call = f64[${EARLIEST_CALL}]
  if (call === 0) return
  armed = false
  f64[${STOPPED_CALL}] = call
  f64[${STOPPED_AFTER_MS}] = blocked
  Atomics.add(i32, ${STOPS}, 1)
  try {
    writeSync(2, workerData.prefix + ' ERROR snippet call #' + call + ' has kept the client busy for ' + blocked + ' ms without yielding, past its timeout: stopping it\\n')
  } catch {}
  session.post('Runtime.terminateExecution')
}, ${TICK_MS / 2}) // keeps the worker alive; the worker itself is unref'd
`

export class SnippetWatchdog {
  private readonly buffer = new SharedArrayBuffer(SLOTS * 8 + 8)
  private readonly f64 = new Float64Array(this.buffer, 0, SLOTS)
  private readonly i32 = new Int32Array(this.buffer)
  private readonly deadlines = new Map<number, number>()
  private worker: Worker | undefined
  private ticker: NodeJS.Timeout | undefined
  private readonly stallMs: number
  private readonly graceMs: number

  constructor(private readonly options: WatchdogOptions) {
    this.stallMs = options.stallMs ?? 3_000
    this.graceMs = options.graceMs ?? 1_000
  }

  get running(): boolean {
    return this.worker !== undefined
  }

  /** How many times a snippet was stopped. */
  get stops(): number {
    return Atomics.load(this.i32, STOPS)
  }

  start(): void {
    if (this.worker !== undefined) return
    this.f64[TICK] = Date.now()
    this.ticker = setInterval(() => {
      this.f64[TICK] = Date.now()
    }, TICK_MS)
    this.ticker.unref()
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        buffer: this.buffer,
        stallMs: this.stallMs,
        graceMs: this.graceMs,
        prefix: this.options.logPrefix ?? '[metapuppet]',
      },
      // The worker needs none of the main thread's loaders (tsx) or flags.
      execArgv: [],
      stdout: false,
      stderr: false,
    })
    worker.unref()
    worker.on('error', (e) => this.options.log.error('the snippet watchdog failed (snippets that never yield are not stopped now): %s', e))
    this.worker = worker
  }

  async stop(): Promise<void> {
    clearInterval(this.ticker)
    const worker = this.worker
    this.worker = undefined
    if (worker !== undefined) await worker.terminate()
  }

  /** A call started; it must end by `deadline` (ms since the epoch). */
  track(call: number, deadline: number): void {
    this.deadlines.set(call, deadline)
    if (this.f64[EARLIEST_CALL] === 0 || deadline < this.f64[EARLIEST_DEADLINE]) {
      this.f64[EARLIEST_DEADLINE] = deadline
      this.f64[EARLIEST_CALL] = call
    }
  }

  /** The call ended (answered, failed or timed out). */
  untrack(call: number): void {
    this.deadlines.delete(call)
    if (this.f64[SYNC_CALL] === call) this.leaveSync(call)
    if (this.f64[EARLIEST_CALL] !== call) return
    let earliest = 0
    let deadline = Infinity
    for (const [id, d] of this.deadlines) {
      if (d < deadline) {
        deadline = d
        earliest = id
      }
    }
    this.f64[EARLIEST_CALL] = earliest
    this.f64[EARLIEST_DEADLINE] = earliest === 0 ? 0 : deadline
  }

  /** The call's synchronous part starts running. */
  enterSync(call: number, deadline: number): void {
    this.f64[SYNC_DEADLINE] = deadline
    this.f64[SYNC_CALL] = call
  }

  leaveSync(call: number): void {
    if (this.f64[SYNC_CALL] !== call) return
    this.f64[SYNC_CALL] = 0
    this.f64[SYNC_DEADLINE] = 0
  }

  /** How long the loop was blocked when the watchdog stopped `call`; null when it did not. */
  stoppedAfter(call: number): number | null {
    return this.f64[STOPPED_CALL] === call ? this.f64[STOPPED_AFTER_MS] : null
  }
}
