/**
 * The client stops when the process that started it dies without forwarding a signal:
 * a real parent process is SIGKILLed and the real client (src/main.ts, mock puppet) exits.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { after, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { PARENT_ENV, watchParent } from '../src/parent.js'
import { sleep } from './helpers.js'

const clientDir = join(dirname(fileURLToPath(import.meta.url)), '..')
const dir = mkdtempSync(join(tmpdir(), 'metapuppet-parent-'))
const pids: number[] = []
after(() => {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true })
})

/** True while `pid` runs (a zombie waiting for init to reap it counts as gone). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  }
}

it('does nothing unless the launcher names itself', () => {
  let gone = 0
  const stop = watchParent({ env: {}, onGone: () => gone++, ppid: () => 1, intervalMs: 1 })
  stop()
  assert.equal(gone, 0)
})

it('reports a bad variable and a pid that is not its parent', () => {
  const warnings: string[] = []
  watchParent({ env: { [PARENT_ENV]: 'abc' }, onGone: () => assert.fail(), onWarn: (w) => warnings.push(w) })
  watchParent({
    env: { [PARENT_ENV]: '4242' },
    onGone: () => assert.fail(),
    onWarn: (w) => warnings.push(w),
    ppid: () => 17,
    exists: () => true,
  })
  assert.match(warnings[0]!, /METAPUPPET_PARENT_PID="abc" is not a process id/)
  assert.match(warnings[1]!, /METAPUPPET_PARENT_PID=4242 is not this process's parent \(17\)/)
})

it('calls onGone once when the parent pid changes, or when the parent died before it started', async () => {
  let parent = 4242
  const calls: string[] = []
  const stop = watchParent({ env: { [PARENT_ENV]: '4242' }, onGone: (why) => calls.push(why), ppid: () => parent, intervalMs: 5 })
  await sleep(30)
  assert.deepEqual(calls, [])
  parent = 1
  await sleep(50)
  stop()
  assert.deepEqual(calls, ['the parent process 4242 is gone (parent is now 1)'])

  const early: string[] = []
  watchParent({ env: { [PARENT_ENV]: '4243' }, onGone: (why) => early.push(why), ppid: () => 1, exists: () => false })
  await sleep(5)
  assert.deepEqual(early, ['the parent process 4243 is gone'])
})

it('the real client exits soon after its parent is SIGKILLed', { timeout: 60_000 }, async () => {
  const configPath = join(dir, 'config.json')
  // Nothing listens on port 9 (discard): the client keeps retrying, the mock bot logs in.
  writeFileSync(configPath, JSON.stringify({
    server: { host: '127.0.0.1', port: 9, token: 'parent-test-token-0123456789' },
    client: { bot: 'orphan', outbox_path: null },
  }))
  // The parent: a plain Node process that starts the client, names itself, then just waits.
  const launcher = [
    "const { spawn } = require('node:child_process')",
    `const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--config', ${JSON.stringify(configPath)}],`,
    `  { cwd: ${JSON.stringify(clientDir)}, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ${PARENT_ENV}: String(process.pid), METAPUPPET_LOG_LEVEL: 'info' } })`,
    "process.stdout.write(child.pid + '\\n')",
    'setInterval(() => {}, 1000)',
  ].join('\n')
  const parent = spawn(process.execPath, ['-e', launcher], { stdio: ['ignore', 'pipe', 'pipe'] })
  pids.push(parent.pid!)
  let stdout = ''
  let stderr = ''
  parent.stdout!.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  parent.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString() })

  const deadline = Date.now() + 40_000
  while (!/logged in as/.test(stderr)) {
    if (Date.now() > deadline) assert.fail(`the client never logged in:\n${stderr}`)
    await sleep(20)
  }
  const child = Number(stdout.trim())
  pids.push(child)
  assert.ok(running(child))

  parent.kill('SIGKILL')
  const killedAt = Date.now()
  while (running(child)) {
    if (Date.now() - killedAt > 15_000) assert.fail(`the client outlived its parent by 15 s:\n${stderr}`)
    await sleep(50)
  }
  console.log(`client exited ${Date.now() - killedAt} ms after its parent was killed`)
  assert.match(stderr, /the parent process \d+ is gone \(parent is now \d+\): stopping/)
})
