import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseJsonLossless, quoteIdNumbers } from '../src/puppets/ilink/json.js'
import { checkAnswer, describeBody } from '../src/puppets/ilink/api.js'
import { ILinkError } from '../src/puppets/ilink/errors.js'

describe('ilink JSON: ids are never rounded', () => {
  it('keeps message ids above 2^53 exact (two ids that JSON.parse merges stay two)', () => {
    const text = '{"msgs":[{"message_id":9007199254740993,"seq":1},{"message_id":9007199254740992,"seq":2}]}'
    const plain = JSON.parse(text) as { msgs: { message_id: number }[] }
    assert.equal(plain.msgs[0]!.message_id, plain.msgs[1]!.message_id) // the bug being avoided
    const parsed = parseJsonLossless(text) as { msgs: { message_id: unknown; seq: unknown }[] }
    assert.equal(parsed.msgs[0]!.message_id, '9007199254740993')
    assert.equal(parsed.msgs[1]!.message_id, '9007199254740992')
    assert.equal(parsed.msgs[0]!.seq, 1) // other numbers stay numbers
  })

  it('quotes every *_id and id number, at any depth, and leaves strings alone', () => {
    const text = '{ "id" : 18446744073709551615, "ref_msg": {"svr_id": -12345678901234567890}, "msg_id":"123", "create_time_ms": 1700000000000, "client_id": 7 }'
    assert.deepEqual(parseJsonLossless(text), {
      id: '18446744073709551615',
      ref_msg: { svr_id: '-12345678901234567890' },
      msg_id: '123',
      create_time_ms: 1700000000000,
      client_id: '7',
    })
  })

  it('is not fooled by id-like text inside strings, escaped quotes, or arrays', () => {
    const text = JSON.stringify({ text: 'say "message_id": 99999999999999999999 \\" ok', list: [1, 2], message_id: 5, "a\"_id": 3 })
    const parsed = parseJsonLossless(text) as Record<string, unknown>
    assert.equal(parsed.text, 'say "message_id": 99999999999999999999 \\" ok')
    assert.deepEqual(parsed.list, [1, 2])
    assert.equal(parsed.message_id, '5')
  })

  it('malformed JSON still throws; text without id numbers is returned as is', () => {
    assert.throws(() => parseJsonLossless('{"message_id": 1'))
    assert.throws(() => parseJsonLossless('{"a": "unterminated'))
    const text = '{"ret":0,"msgs":[]}'
    assert.equal(quoteIdNumbers(text), text)
  })

  it('handles a 10 MB cursor quickly', () => {
    const big = 'x'.repeat(10 * 1024 * 1024)
    const started = performance.now()
    const parsed = parseJsonLossless(`{"get_updates_buf":"${big}","msgs":[{"message_id":12345678901234567890}]}`) as { msgs: { message_id: string }[]; get_updates_buf: string }
    assert.equal(parsed.get_updates_buf.length, big.length)
    assert.equal(parsed.msgs[0]!.message_id, '12345678901234567890')
    assert.ok(performance.now() - started < 2_000)
  })
})

describe('ilink answers: HTTP 200 with ret/errcode != 0 is a failure', () => {
  it('passes a clean answer', () => {
    assert.deepEqual(checkAnswer('getupdates', { ret: 0, msgs: [] }), { ret: 0, msgs: [] })
    assert.deepEqual(checkAnswer('getupdates', { msgs: [] }), { msgs: [] })
  })

  it('ret -2 on sendmessage names the closed window; -14 (in ret or errcode) names the expiry', () => {
    assert.throws(() => checkAnswer('sendmessage', { ret: -2, errmsg: '' }), (e: unknown) => {
      return e instanceof ILinkError && e.code === -2 && e.endpoint === 'sendmessage' && /send window to this user is closed; only a new message from the user reopens it/.test(e.message)
    })
    for (const answer of [{ errcode: -14 }, { ret: -14 }, { ret: -1, errcode: -14 }]) {
      assert.throws(() => checkAnswer('getupdates', answer), (e: unknown) => e instanceof ILinkError && e.code === -14 && /session expired/.test(e.message))
    }
    assert.throws(() => checkAnswer('getconfig', { ret: 5, errmsg: 'nope' }), (e: unknown) => e instanceof ILinkError && e.code === 5 && /getconfig failed \(ret=5 errcode=none errmsg="nope"\)/.test(e.message))
  })

  it('a non-object or a non-numeric code is a bad_response', () => {
    for (const answer of [[], null, 'ok', 3]) {
      assert.throws(() => checkAnswer('getupdates', answer), (e: unknown) => e instanceof ILinkError && e.code === 'bad_response')
    }
    assert.throws(() => checkAnswer('getupdates', { ret: 'zero' }), (e: unknown) => e instanceof ILinkError && e.code === 'bad_response')
  })
})

describe('ilink error texts never quote what could hold a token', () => {
  it('quotes an HTML page, summarises JSON, and only counts broken JSON', () => {
    assert.equal(describeBody('<html>502 Bad Gateway</html>'), '"<html>502 Bad Gateway</html>"')
    assert.equal(describeBody('{"ret":-1,"errmsg":"bad","context_token":"SECRET"}'), 'a JSON answer (ret=-1 errcode=null errmsg="bad")')
    assert.equal(describeBody('{"msgs":[{"context_token":"SECRET"'), '34 characters of JSON that do not parse')
    assert.ok(!describeBody('[{"context_token":"SECRET"}]').includes('SECRET'))
  })
})
