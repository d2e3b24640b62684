// npm openid-client, unmodified: genericGrantRequest with the token-exchange grant.
import * as client from 'openid-client';
import { readFileSync } from 'node:fs';

const server = { issuer: process.env.ISSUER, token_endpoint: process.env.TOKEN_URL };
const config = new client.Configuration(server, 'openid-client-test', undefined, client.None());
client.allowInsecureRequests(config); // the test server is plain http on loopback
const response = await client.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:token-exchange', {
  subject_token: readFileSync(process.env.SUBJECT_TOKEN_FILE, 'utf8').trim(),
  subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
  audience: process.env.AUDIENCE,
  scope: 'read',
});
process.stdout.write(JSON.stringify(response));
