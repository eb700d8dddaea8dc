/**
 * Stops the client when the process that started it is gone.
 *
 * `metapuppet client` (Python) runs this client as its child and forwards SIGINT/SIGTERM/SIGHUP.
 * When the Python process dies without a chance to forward (SIGKILL, a crash, the OOM killer),
 * the client would run on as an orphan with the bot logged in. So the launcher names itself in
 * `METAPUPPET_PARENT_PID`, and the client polls its own parent pid: once it differs (the orphan
 * was re-parented to init or a subreaper), the client stops.
 *
 * Opt-in on purpose: a client started by hand under `nohup` or a shell that exits must keep
 * running. Comparing `process.ppid` (not `kill(pid, 0)`) is immune to the pid being reused.
 */
export const PARENT_ENV = 'METAPUPPET_PARENT_PID'

export interface ParentWatchOptions {
  /** Called once when the parent is gone; `why` is a sentence for the log. */
  onGone: (why: string) => void
  /** Reports a set-up problem (the variable is not a pid, or not our parent). */
  onWarn?: (message: string) => void
  env?: NodeJS.ProcessEnv
  intervalMs?: number
  /** The current parent pid (tests). */
  ppid?: () => number
  /** Whether a pid exists (tests). */
  exists?: (pid: number) => boolean
}

/** Starts watching when `METAPUPPET_PARENT_PID` is set; returns a function that stops it. */
export function watchParent(options: ParentWatchOptions): () => void {
  const raw = (options.env ?? process.env)[PARENT_ENV]
  if (raw === undefined || raw.trim() === '') return () => {}
  const expected = Number(raw)
  if (!Number.isInteger(expected) || expected <= 0) {
    options.onWarn?.(`${PARENT_ENV}=${JSON.stringify(raw)} is not a process id; not watching the parent`)
    return () => {}
  }
  const ppid = options.ppid ?? (() => process.ppid)
  const exists = options.exists ?? pidExists
  let done = false
  const gone = (why: string): void => {
    if (done) return
    done = true
    clearInterval(timer)
    options.onGone(why)
  }
  const timer = setInterval(() => {
    const now = ppid()
    if (now !== expected) gone(`the parent process ${expected} is gone (parent is now ${now})`)
  }, options.intervalMs ?? 1_000)
  timer.unref()
  const first = ppid()
  if (first !== expected) {
    if (!exists(expected)) {
      // It died while this client was starting.
      queueMicrotask(() => gone(`the parent process ${expected} is gone`))
    } else {
      clearInterval(timer)
      done = true
      options.onWarn?.(`${PARENT_ENV}=${expected} is not this process's parent (${first}); not watching it`)
    }
  }
  return () => {
    done = true
    clearInterval(timer)
  }
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}
