import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { silentLogger } from '../src/log.js'
import { IlinkStore, type Credentials } from '../src/puppets/ilink/store.js'

const root = mkdtempSync(join(tmpdir(), 'ilink-store-'))
after(() => rmSync(root, { recursive: true, force: true }))

const credentials: Credentials = { bot_token: 'tok-123', ilink_bot_id: 'bot@im.bot', ilink_user_id: 'u@im.wechat', baseurl: null, saved_at: 1 }
const mode = (path: string): number => statSync(path).mode & 0o777

describe('ilink store', () => {
  it('creates a 0700 folder and 0600 files', () => {
    const dir = join(root, 'a', 'ilink', 'bot')
    const store = new IlinkStore(dir, silentLogger)
    store.open()
    store.saveCredentials(credentials)
    store.saveCursor('bot@im.bot', 'cursor-1')
    store.saveContextTokens('bot@im.bot', new Map([['u@im.wechat', { token: 'ctx', messageId: '1', createTimeMs: 5 }]]))
    assert.equal(mode(dir), 0o700)
    for (const name of readdirSync(dir)) assert.equal(mode(join(dir, name)), 0o600, name)
    assert.deepEqual(readdirSync(dir).sort(), ['context-tokens.json', 'credentials.json', 'cursor.json'])
  })

  it('survives a restart: a new store reads what the old one wrote', () => {
    const dir = join(root, 'b')
    const first = new IlinkStore(dir, silentLogger)
    first.open()
    first.saveCredentials(credentials)
    first.saveCursor('bot@im.bot', 'cursor-2')
    first.saveContextTokens('bot@im.bot', new Map([['u@im.wechat', { token: 'ctx-2', messageId: '9', createTimeMs: 7 }]]))
    const second = new IlinkStore(dir, silentLogger)
    second.open()
    assert.deepEqual(second.loadCredentials(), credentials)
    assert.equal(second.loadCursor('bot@im.bot'), 'cursor-2')
    assert.equal(second.loadCursor('another@im.bot'), '') // a cursor belongs to its account
    assert.deepEqual([...second.loadContextTokens('bot@im.bot')], [['u@im.wechat', { token: 'ctx-2', messageId: '9', createTimeMs: 7 }]])
    assert.equal(second.loadContextTokens('another@im.bot').size, 0)
    second.forgetCredentials()
    assert.equal(new IlinkStore(dir, silentLogger).loadCredentials(), null)
  })

  it('writes atomically: no temp file stays; a temp file a crash left is removed and never read', () => {
    const dir = join(root, 'c')
    const store = new IlinkStore(dir, silentLogger)
    store.open()
    store.saveCursor('bot', 'good')
    for (let i = 0; i < 20; i++) store.saveCursor('bot', `good-${i}`)
    assert.deepEqual(readdirSync(dir), ['cursor.json'])
    // A crash between writing the temp file and the rename: the old file is intact.
    writeFileSync(join(dir, 'cursor.json.tmp-1-dead'), '{"bot_id":"bot","get_updates_buf":"half')
    const after = new IlinkStore(dir, silentLogger)
    after.open()
    assert.equal(after.loadCursor('bot'), 'good-19')
    assert.deepEqual(readdirSync(dir), ['cursor.json'])
  })

  it('damaged or incomplete files are reported and treated as absent', () => {
    const dir = join(root, 'd')
    const lines: string[] = []
    const log = { ...silentLogger, error: (...args: unknown[]) => lines.push(args.map(String).join(' ')) }
    const store = new IlinkStore(dir, log)
    store.open()
    writeFileSync(join(dir, 'credentials.json'), '{"bot_token": "x"', { mode: 0o600 })
    assert.equal(store.loadCredentials(), null)
    writeFileSync(join(dir, 'credentials.json'), '{"bot_token": "x"}', { mode: 0o600 })
    assert.equal(store.loadCredentials(), null)
    writeFileSync(join(dir, 'context-tokens.json'), '[1,2]', { mode: 0o600 })
    assert.equal(store.loadContextTokens('bot').size, 0)
    assert.equal(lines.length, 3)
    assert.ok(lines.every((line) => !line.includes('"x"')), 'no token text in the logs')
  })

  it('tightens a folder and files that were created too open', () => {
    const dir = join(root, 'e')
    mkdirSync(dir, { mode: 0o755 })
    writeFileSync(join(dir, 'credentials.json'), JSON.stringify(credentials), { mode: 0o644 })
    chmodSync(dir, 0o755)
    chmodSync(join(dir, 'credentials.json'), 0o644)
    const store = new IlinkStore(dir, silentLogger)
    store.open()
    assert.equal(mode(dir), 0o700)
    assert.equal(mode(join(dir, 'credentials.json')), 0o600)
    assert.equal(JSON.parse(readFileSync(join(dir, 'credentials.json'), 'utf8')).bot_token, 'tok-123')
  })
})
