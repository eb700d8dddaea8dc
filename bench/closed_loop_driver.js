// The closed-loop driver of bench/closed_loop.py: the same text drives every system measured.
// It runs as an exec snippet inside the MetaPuppet Node client, and through
// bench/mock_peer.mjs for the mock's own ceiling and for the python-wechaty baseline.
// It sees `args` and `mocker` (wechaty-puppet-mock's Mocker) and nothing else.
//
// Contacts talk through the mock's ContactMock directly (not MockKit.say, which scans the
// whole message cache on every call to find the new id). A reply counts when it appears in
// the contact's chat: the mock emits `message` on the listener's ContactMock the moment the
// bot's send reaches it, before any Wechaty or MetaPuppet processing of the echo.
//
// args: {mode: 'rounds' | 'window' | 'burst', ids, userId, tag, prefix?, rounds?, seconds?,
//        per?, grace_ms, timeout_ms}; texts are `<prefix>:<tag>:<contact>:<i>` (prefix 'cl')
//   rounds  every contact does `rounds` round trips (the warm-up); bounded by timeout_ms
//   window  closed loop for `seconds`; only replies inside the window count; a message
//           unanswered grace_ms after the window ends is `lost`
//   burst   every contact says `per` messages at once; waits (up to timeout_ms) for all
const { mode, ids, userId, tag } = args
const prefix = args.prefix ?? 'cl'

const puppet = mocker.puppet
if (puppet.__benchSendReturnsId !== true) {
  // The mock's messageSendText resolves to nothing where a real puppet resolves to the new
  // message's id, and the bots act on that id (Wechaty loads the sent message; python-wechaty
  // asks the service for message '' and logs an error per reply without it). The mock emits
  // the new message synchronously inside the call, so that is the id to hand back. Installed
  // once per process, the same for every system measured.
  let lastId
  puppet.on('message', (payload) => { lastId = payload.messageId })
  const sendText = puppet.messageSendText.bind(puppet)
  puppet.messageSendText = (...callArgs) => {
    lastId = undefined
    const sending = sendText(...callArgs)
    const id = lastId
    return sending.then(() => id)
  }
  puppet.__benchSendReturnsId = true
}
const contacts = ids.map((id) => mocker.ContactMock.load(id))
const user = mocker.ContactMock.load(userId)
const waiting = new Map() // expected reply text -> {at, resolve}
const reverse = (text) => text.split('').reverse().join('')

const onMessage = (msg) => {
  const payload = msg.payload
  if (payload.talkerId !== userId) return
  const entry = waiting.get(payload.text)
  if (entry === undefined) return
  waiting.delete(payload.text)
  entry.resolve({ at: entry.at, got: performance.now() })
}
let gaveUp = false
const giveUp = () => {
  gaveUp = true
  for (const entry of waiting.values()) entry.resolve(null)
  waiting.clear()
}
// Every message is said from a macrotask of its own (setImmediate), as one arriving from the
// network would be: a bot answering in Node (the ceilings) could otherwise run the whole loop
// as one chain of microtasks and starve timers and I/O (the MetaPuppet client's forwarding
// among them) until the window ends. The burst queues all its messages at the same instant.
// The reply is registered before the say: a bot may answer synchronously.
const say = (n, i, entry) => {
  if (gaveUp) { entry.resolve(null); return }
  const text = `${prefix}:${tag}:${n}:${i}`
  entry.at = performance.now()
  waiting.set(reverse(text), entry)
  contacts[n].say(text).to(user)
}
const ask = (n, i) => new Promise((resolve) => {
  setImmediate(() => say(n, i, { at: 0, resolve }))
})

for (const contact of contacts) contact.on('message', onMessage)
const latencies = []
let answered = 0
let late = 0
let lost = 0
let windowMs = 0
const started = performance.now()
let timer
try {
  if (mode === 'rounds') {
    timer = setTimeout(giveUp, args.timeout_ms)
    await Promise.all(contacts.map(async (_, n) => {
      for (let i = 0; i < args.rounds; i++) {
        const reply = await ask(n, i)
        if (reply === null) { lost++; return }
        answered++
        latencies.push(reply.got - reply.at)
      }
    }))
    windowMs = performance.now() - started
  } else if (mode === 'window') {
    windowMs = args.seconds * 1000
    const deadline = started + windowMs
    timer = setTimeout(giveUp, windowMs + args.grace_ms)
    await Promise.all(contacts.map(async (_, n) => {
      for (let i = 0; performance.now() < deadline; i++) {
        const reply = await ask(n, i)
        if (reply === null) { lost++; return }
        if (reply.got > deadline) { late++; return }
        answered++
        latencies.push(reply.got - reply.at)
      }
    }))
  } else if (mode === 'burst') {
    timer = setTimeout(giveUp, args.timeout_ms)
    const pending = []
    for (let i = 0; i < args.per; i++) {
      for (let n = 0; n < contacts.length; n++) pending.push(ask(n, i))
    }
    let last = started
    for (const reply of await Promise.all(pending)) {
      if (reply === null) { lost++; continue }
      answered++
      latencies.push(reply.got - reply.at)
      if (reply.got > last) last = reply.got
    }
    windowMs = last - started
  } else {
    throw new Error(`unknown mode ${JSON.stringify(mode)}`)
  }
} finally {
  clearTimeout(timer)
  giveUp()
  for (const contact of contacts) contact.off('message', onMessage)
}
return {
  mode,
  answered,
  late,
  lost,
  window_ms: windowMs,
  wall_ms: performance.now() - started,
  // integer microseconds: a compact JSON array, exact enough for percentiles
  latencies_us: latencies.map((ms) => Math.round(ms * 1000)),
}
