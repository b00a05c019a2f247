'use strict'
// submit_order load from a grenache-nodejs-http client (a foreign peer of the workers).
// Usage: node submit_load.js --grape URL --count N [--concurrency 64] [--client js]
// Prints one JSON line: {"orders", "seconds", "rps", "errors", "cpu_us", "records": [[seq, sent, acked]]}
// with times in seconds since the epoch, like bench/e2e_bench.py's own load process.
const crypto = require('crypto')
const { PeerRPCClient } = require('grenache-nodejs-http')
const Link = require('grenache-nodejs-link')

const args = {}
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1]

const link = new Link({ grape: args.grape, requestTimeout: 10000 })
link.start()
const peer = new PeerRPCClient(link, {})
peer.init()

const count = Number(args.count)
const concurrency = Number(args.concurrency || 64)
const client = args.client || 'js'
const records = []
let next = 0
let errors = 0
let running = concurrency
const t0 = Date.now()

function order (n) {
  const buy = n % 2 === 0
  const cents = buy ? 9900 + (n * 7919) % 151 : 9950 + (n * 104729) % 151
  return {
    clientId: client,
    orderId: `${client}-${n}`,
    side: buy ? 'buy' : 'sell',
    price: (cents / 100).toFixed(2),
    amount: (1 + (n % 40) / 8).toFixed(3)
  }
}

// Orders are signed (docs/protocol.md, "Signatures"): Ed25519 over
// "dex-order/1\n" + the payload's canonical JSON (keys sorted, no spaces) without "sig".
const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519')
const pubKey = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url').toString('hex')

function canonical (value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value)
  if (Array.isArray(value)) return '[' + value.map(canonical).join(',') + ']'
  return '{' + Object.keys(value).sort().map(k => JSON.stringify(k) + ':' + canonical(value[k])).join(',') + '}'
}

function signed (payload) {
  const body = { ...payload, pubKey }
  const message = Buffer.from('dex-order/1\n' + canonical(body))
  return { ...body, sig: crypto.sign(null, message, privateKey).toString('hex') }
}

function send (n, payload) {
  const sent = Date.now() / 1000
  peer.request('submit_order', payload, { timeout: 10000 }, (err, data) => {
    if (err) {
      errors++
      return setTimeout(() => send(n, payload), 50) // same orderId: idempotent retry
    }
    records.push([data.seq, sent, Date.now() / 1000])
    worker()
  })
}

function worker () {
  if (next >= count) {
    if (--running === 0) finish()
    return
  }
  const n = next++
  send(n, signed(order(n)))
}

function finish () {
  const seconds = (Date.now() - t0) / 1000
  const cpu = process.cpuUsage() // µs since start: start-up, signing and sending
  process.stdout.write(JSON.stringify({ orders: records.length, seconds, rps: records.length / seconds, errors, cpu_us: cpu.user + cpu.system, records }) + '\n')
  peer.stop()
  link.stop()
}

// Wait until the service is announced, then start.
function ready () {
  link.lookup('submit_order', (err, peers) => {
    if (err || !peers || !peers.length) return setTimeout(ready, 100)
    for (let i = 0; i < concurrency; i++) worker()
  })
}
ready()
