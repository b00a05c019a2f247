'use strict'
// A grenache-nodejs-http PeerRPCServer serving one name, announced through a grape.
// Usage: node rpc_server.js --grape http://127.0.0.1:30001 --name svc [--port 0]
// Replies {"echo": payload, "server": "node", "port": N}; a payload {"error": "X"}
// gets the error "X". Prints {"ready": true, "port": N} once the first announce
// succeeded, then re-announces every second until killed.
const { PeerRPCServer } = require('grenache-nodejs-http')
const Link = require('grenache-nodejs-link')
const args = require('./_args')(process.argv.slice(2))

const link = new Link({ grape: args.grape, requestTimeout: 5000 })
link.start()
const peer = new PeerRPCServer(link, { timeout: 300000 })
peer.init()
const port = Number(args.port || 0) || (1024 + Math.floor(Math.random() * 60000))
const service = peer.transport('server')
service.listen(port)
service.on('request', (rid, key, payload, handler) => {
  if (payload && typeof payload === 'object' && typeof payload.error === 'string') {
    handler.reply(new Error(payload.error), null)
    return
  }
  handler.reply(null, { echo: payload, server: 'node', port })
})

let ready = false
function announce () {
  link.announce(args.name, port, {}, (err) => {
    if (!err && !ready) {
      ready = true
      process.stdout.write(JSON.stringify({ ready: true, port }) + '\n')
    }
  })
}
announce()
setInterval(announce, 1000)
process.on('SIGTERM', () => process.exit(0))
