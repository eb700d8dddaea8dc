import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { types } from 'wechaty-puppet'
import { silentLogger } from '../src/log.js'
import type { CallOptions, JsonObject, QrCode } from '../src/puppets/ilink/api.js'
import { ILinkError } from '../src/puppets/ilink/errors.js'
import { qrLogin, type LoginOptions, type LoginOutcome } from '../src/puppets/ilink/login.js'

type Step = JsonObject | ILinkError

/** A scripted service: each poll takes the next step; each QR fetch hands out qr-1, qr-2, ... */
function scripted(steps: Step[], qrFailures: ILinkError[] = []) {
  const calls: { kind: 'qr' | 'poll'; baseUrl?: string; qrcode?: string; code?: string | null }[] = []
  const scans: { qrcode: string; status: types.ScanStatus; state: string }[] = []
  const problems: unknown[] = []
  const sleeps: number[] = []
  let qrs = 0
  const options: LoginOptions = {
    baseUrl: 'https://ilink.example',
    log: silentLogger,
    api: {
      async getBotQrcode(_o: CallOptions): Promise<QrCode> {
        calls.push({ kind: 'qr' })
        const failure = qrFailures.shift()
        if (failure !== undefined) throw failure
        qrs++
        return { qrcode: `qr-${qrs}`, qrcode_img_content: `https://qr.example/${qrs}` }
      },
      async getQrcodeStatus(baseUrl: string, qrcode: string, code: string | null): Promise<JsonObject> {
        calls.push({ kind: 'poll', baseUrl, qrcode, code })
        const step = steps.shift()
        if (step === undefined) throw new Error('script ran out')
        if (step instanceof ILinkError) throw step
        return step
      },
    },
    callbacks: {
      scan: (qrcode, status, state) => scans.push({ qrcode, status, state }),
      problem: (e) => problems.push(e),
      recovered: () => {},
    },
    verifyCode: async () => '4321',
    retryDelay: (attempt) => 100 * attempt,
    pollIntervalMs: 1000,
    sleep: async (ms) => {
      sleeps.push(ms)
    },
    now: () => 0,
  }
  return { options, calls, scans, problems, sleeps }
}

const confirmed = { status: 'confirmed', bot_token: 'secret-token', ilink_bot_id: 'bot@im.bot', ilink_user_id: 'owner@im.wechat', baseurl: 'https://api2.example/' }

describe('ilink QR login state machine', () => {
  it('wait → scaned → confirmed: one QR shown, one Scanned, then the credentials', async () => {
    const s = scripted([{ status: 'wait' }, { status: 'scaned' }, { status: 'scaned' }, confirmed])
    const outcome = await qrLogin(s.options, new AbortController().signal)
    assert.deepEqual(outcome, { kind: 'confirmed', botToken: 'secret-token', botId: 'bot@im.bot', userId: 'owner@im.wechat', baseUrl: 'https://api2.example' } satisfies LoginOutcome)
    assert.deepEqual(s.scans, [
      { qrcode: 'https://qr.example/1', status: types.ScanStatus.Waiting, state: 'wait' },
      { qrcode: '', status: types.ScanStatus.Scanned, state: 'scaned' },
      { qrcode: '', status: types.ScanStatus.Confirmed, state: 'confirmed' },
    ])
    assert.equal(s.calls.filter((c) => c.kind === 'qr').length, 1)
    // Every poll waits out the poll interval: never a tight loop.
    assert.deepEqual(s.sleeps, [1000, 1000, 1000])
  })

  it('a poll that times out counts as wait', async () => {
    const timeout = new ILinkError('no answer', { code: 'timeout', endpoint: 'get_qrcode_status' })
    const s = scripted([timeout, timeout, confirmed])
    const outcome = await qrLogin(s.options, new AbortController().signal)
    assert.equal(outcome.kind, 'confirmed')
    assert.equal(s.problems.length, 0)
  })

  it('expired → Timeout, then a new QR code is fetched and shown', async () => {
    const s = scripted([{ status: 'scaned' }, { status: 'expired' }, { status: 'wait' }, confirmed])
    await qrLogin(s.options, new AbortController().signal)
    assert.deepEqual(
      s.scans.map((x) => [x.qrcode, types.ScanStatus[x.status], x.state]),
      [
        ['https://qr.example/1', 'Waiting', 'wait'],
        ['', 'Scanned', 'scaned'],
        ['', 'Timeout', 'expired'],
        ['https://qr.example/2', 'Waiting', 'wait'],
        ['', 'Confirmed', 'confirmed'],
      ],
    )
    assert.deepEqual(s.calls.filter((c) => c.kind === 'poll').map((c) => c.qrcode), ['qr-1', 'qr-1', 'qr-2', 'qr-2'])
  })

  it('scaned_but_redirect: polling continues at redirect_host with base_url’s scheme; a new QR starts over at base_url', async () => {
    const s = scripted([
      { status: 'scaned_but_redirect', redirect_host: '127.0.0.1:9999' },
      { status: 'scaned' },
      { status: 'expired' },
      { status: 'scaned_but_redirect', redirect_host: 'bad/host' },
      confirmed,
    ])
    await qrLogin(s.options, new AbortController().signal)
    assert.deepEqual(
      s.calls.filter((c) => c.kind === 'poll').map((c) => c.baseUrl),
      ['https://ilink.example', 'https://127.0.0.1:9999', 'https://127.0.0.1:9999', 'https://ilink.example', 'https://ilink.example'],
    )
  })

  it('need_verifycode: the pairing code goes with the next poll only', async () => {
    const s = scripted([{ status: 'scaned' }, { status: 'need_verifycode' }, { status: 'scaned' }, confirmed])
    await qrLogin(s.options, new AbortController().signal)
    assert.deepEqual(s.calls.filter((c) => c.kind === 'poll').map((c) => c.code), [null, null, '4321', null])
    assert.ok(s.scans.some((x) => x.state === 'need_verifycode' && x.status === types.ScanStatus.Scanned))
  })

  it('need_verifycode again after a code: reported again (the code was wrong)', async () => {
    const s = scripted([{ status: 'need_verifycode' }, { status: 'need_verifycode' }, { status: 'scaned' }, confirmed])
    await qrLogin(s.options, new AbortController().signal)
    assert.deepEqual(s.calls.filter((c) => c.kind === 'poll').map((c) => c.code), [null, '4321', '4321', null])
    assert.equal(s.scans.filter((x) => x.state === 'need_verifycode').length, 2)
  })

  it('need_verifycode without a code keeps asking (no code sent)', async () => {
    const s = scripted([{ status: 'need_verifycode' }, { status: 'need_verifycode' }, confirmed])
    s.options.verifyCode = async () => null
    await qrLogin(s.options, new AbortController().signal)
    assert.deepEqual(s.calls.filter((c) => c.kind === 'poll').map((c) => c.code), [null, null, null])
    assert.equal(s.scans.filter((x) => x.state === 'need_verifycode').length, 1) // once per state change
  })

  it('verify_code_blocked → Cancel and a new QR code', async () => {
    const s = scripted([{ status: 'need_verifycode' }, { status: 'verify_code_blocked' }, confirmed])
    await qrLogin(s.options, new AbortController().signal)
    assert.deepEqual(s.scans.map((x) => x.state), ['wait', 'need_verifycode', 'verify_code_blocked', 'wait', 'confirmed'])
    assert.equal(s.calls.filter((c) => c.kind === 'qr').length, 2)
  })

  it('binded_redirect returns "already bound"', async () => {
    const s = scripted([{ status: 'scaned' }, { status: 'binded_redirect' }])
    assert.deepEqual(await qrLogin(s.options, new AbortController().signal), { kind: 'already_bound' })
  })

  it('confirmed without a token is reported and a new QR code fetched; a bad baseurl is dropped', async () => {
    const s = scripted([{ status: 'confirmed', ilink_bot_id: 'x' }, { ...confirmed, baseurl: 'ftp://nope' }])
    const outcome = await qrLogin(s.options, new AbortController().signal)
    assert.equal(s.problems.length, 1)
    assert.match(String((s.problems[0] as Error).message), /without bot_token/)
    assert.equal(outcome.kind === 'confirmed' && outcome.baseUrl, null)
    assert.equal(s.calls.filter((c) => c.kind === 'qr').length, 2)
  })

  it('failing calls back off with growing delays and report each failure to the caller', async () => {
    const http = (n: number): ILinkError => new ILinkError('HTTP 500', { code: 'http_500', endpoint: 'get_qrcode_status', httpStatus: 500 })
    const s = scripted([http(1), http(2), http(3), confirmed], [new ILinkError('down', { code: 'network', endpoint: 'get_bot_qrcode' })])
    await qrLogin(s.options, new AbortController().signal)
    assert.equal(s.problems.length, 4)
    // qr failure: 100; then polls fail 3 times after a successful QR fetch: 100, 200, 300 (failures reset on success)
    assert.deepEqual(s.sleeps.slice(0, 4), [100, 100, 200, 300])
  })

  it('unknown states count as wait; aborting stops the login', async () => {
    const controller = new AbortController()
    const s = scripted([{ status: 'something_new' }, { status: 'wait' }])
    s.options.sleep = async () => {
      if (s.calls.length >= 3) controller.abort()
    }
    await assert.rejects(qrLogin(s.options, controller.signal), (e: unknown) => e instanceof ILinkError && e.code === 'aborted')
  })
})
