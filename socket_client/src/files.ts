/**
 * Data files of the client (outbox, dead letters, memory card, puppet files): private to the user.
 *
 * They hold message text, contact names and login secrets, so files are created 0600 and the
 * folders MetaPuppet creates 0700, whatever the umask says: the mode is set with chmod after
 * creation (a umask can only take bits away, and a strange one such as 0277 would take the
 * owner's write bit too). `main.ts` also sets the process umask to 077, so files written by
 * third-party code (Wechaty's memory card, a puppet's cache) are private as well.
 */
import { chmodSync, closeSync, fchmodSync, fstatSync, mkdirSync, openSync, statSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, parse, resolve } from 'node:path'

export const PRIVATE_FILE_MODE = 0o600
export const PRIVATE_DIR_MODE = 0o700

/**
 * Creates `dir` and any missing parents 0700. An existing folder with looser modes is
 * tightened when it is ours to tighten: owned by this user, not sticky (like /tmp), not a
 * filesystem root and not the home directory. Returns the folder.
 */
export function privateDir(dir: string): string {
  const absolute = resolve(dir)
  const missing: string[] = []
  for (let current = absolute; ; current = dirname(current)) {
    try {
      statSync(current)
      break
    } catch {
      missing.push(current)
      if (dirname(current) === current) break
    }
  }
  for (const folder of missing.reverse()) {
    try {
      mkdirSync(folder, { mode: PRIVATE_DIR_MODE })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
      continue
    }
    chmodSync(folder, PRIVATE_DIR_MODE)
  }
  if (missing.length === 0) tighten(absolute)
  return absolute
}

function tighten(dir: string): void {
  const stat = statSync(dir)
  if ((stat.mode & 0o077) === 0 || (stat.mode & 0o1000) !== 0) return
  if (typeof process.getuid === 'function' && stat.uid !== process.getuid()) return
  if (parse(dir).root === dir || dir === resolve(homedir())) return
  chmodSync(dir, PRIVATE_DIR_MODE)
}

/** Opens (creating it 0600 if needed) `path` with `flags`; the mode is enforced on the open file. */
export function openPrivate(path: string, flags: string): number {
  const fd = openSync(path, flags, PRIVATE_FILE_MODE)
  try {
    if ((fstatSync(fd).mode & 0o777) !== PRIVATE_FILE_MODE) fchmodSync(fd, PRIVATE_FILE_MODE)
  } catch (e) {
    closeSync(fd)
    throw e
  }
  return fd
}
