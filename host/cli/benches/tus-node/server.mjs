// The official Node tus server as its operators run it: Node's own http server, @tus/server in
// front of @tus/file-store, no debug logging (DEBUG unset). The ingest bench starts it beside
// `mediahost serve` and uploads the same bytes to both.
//
// Usage: node server.mjs PORT DIRECTORY
// Prints `listening` on stdout once it accepts connections.
import http from 'node:http';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const [port, directory] = process.argv.slice(2);
if (!port || !directory) {
  console.error('usage: node server.mjs PORT DIRECTORY');
  process.exit(2);
}
const tus = new Server({ path: '/files', datastore: new FileStore({ directory }) });
const server = http.createServer((req, res) => tus.handle(req, res));
server.listen(Number(port), '127.0.0.1', () => console.log('listening'));
