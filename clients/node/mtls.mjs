// Node's https module, unmodified: a token exchange over TLS with a client certificate
// (cert/key options), the server trusted through `ca`. Prints Ferry's JSON response.
import https from 'node:https';
import { readFileSync } from 'node:fs';

const body = new URLSearchParams({
  grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
  subject_token: readFileSync(process.env.SUBJECT_TOKEN_FILE, 'utf8').trim(),
  subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
  audience: process.env.AUDIENCE,
}).toString();
const options = {
  method: 'POST',
  ca: readFileSync(process.env.CA_FILE),
  headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) },
};
if (process.env.CERT_FILE) {
  options.cert = readFileSync(process.env.CERT_FILE);
  options.key = readFileSync(process.env.KEY_FILE);
}
const req = https.request(process.env.TOKEN_URL, options, (res) => {
  let data = '';
  res.on('data', (c) => { data += c; });
  res.on('end', () => process.stdout.write(JSON.stringify({ status: res.statusCode, body: JSON.parse(data) })));
});
req.on('error', (e) => { process.stderr.write(String(e)); process.exit(1); });
req.end(body);
