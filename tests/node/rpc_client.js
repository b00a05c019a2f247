'use strict'
// A grenache-nodejs-http PeerRPCClient: one `request` or `map`, result as JSON.
// Usage: node rpc_client.js --grape URL --name svc --mode request|map
//          [--payload JSON] [--timeout ms] [--compress 1]
// Prints {"ok": true, "result": ...} or {"ok": false, "error": "..."}.
const { PeerRPCClient } = require('grenache-nodejs-http')
const Link = require('grenache-nodejs-link')
const args = require('./_args')(process.argv.slice(2))

const link = new Link({ grape: args.grape, requestTimeout: 5000 })
link.start()
const peer = new PeerRPCClient(link, {})
peer.init()

const payload = args.payload === undefined ? null : JSON.parse(args.payload)
const opts = { timeout: Number(args.timeout || 5000) }
if (args.compress) opts.compress = true
const mode = args.mode || 'request'

function done (err, result) {
  const out = err ? { ok: false, error: err.message } : { ok: true, result }
  process.stdout.write(JSON.stringify(out) + '\n')
  peer.stop()
  link.stop()
  process.exit(0)
}

peer[mode](args.name, payload, opts, done)
