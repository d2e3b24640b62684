// The Ferry GitHub Action: exchanges the job's GitHub OIDC token at Ferry's token endpoint
// (RFC 8693) and hands the issued token to later steps (outputs, an environment variable,
// or a Google external_account credential file that keeps working after the five-minute
// OIDC token expires). Secrets are masked before anything else is printed:
//   1. the runner's OIDC request token, as soon as it is read;
//   2. the OIDC token, as soon as it is parsed;
//   3. the issued token, as soon as it is parsed.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const { ActionError, input, addMask, info, error, setOutput, exportVariable, saveState } = require('./lib/runner');
const { checkedUrl, request } = require('./lib/http');

const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const USER_AGENT = 'ferry-github-action/1';
/** Variables a step must not be able to set through export-env-var. */
const RESERVED = /^(GITHUB_|RUNNER_|ACTIONS_|INPUT_|LD_)|^(PATH|NODE_OPTIONS|BASH_ENV|ENV|GOOGLE_APPLICATION_CREDENTIALS)$/i;

/** The inputs, checked before any request is made. */
function readInputs() {
  const base = checkedUrl(input('url'), 'the url input', false);
  const url = base.href.replace(/\/+$/, '');
  const audience = input('audience');
  if (!audience) {
    throw new ActionError('the audience input is required (the audience of the token Ferry issues)');
  }
  const credentialsFile = input('credentials-file').toLowerCase() || 'false';
  if (credentialsFile !== 'true' && credentialsFile !== 'false') {
    throw new ActionError('the credentials-file input must be "true" or "false"');
  }
  const exportEnvVar = input('export-env-var');
  if (exportEnvVar && (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(exportEnvVar) || RESERVED.test(exportEnvVar))) {
    throw new ActionError('the export-env-var input must be a variable name (letters, digits, _) that the runner does not reserve');
  }
  return {
    url,
    audience,
    subjectAudience: input('subject-audience') || url,
    scope: input('scope'),
    requestedTokenType: input('requested-token-type'),
    credentialsFile: credentialsFile === 'true',
    exportEnvVar,
  };
}

/** The runner's OIDC request endpoint and its bearer token, present only with id-token: write. */
function runnerOidc() {
  const requestUrl = process.env.ACTIONS_ID_TOKEN_REQUEST_URL;
  const requestToken = process.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN;
  if (!requestUrl || !requestToken) {
    throw new ActionError(
      'this job cannot request a GitHub OIDC token: ACTIONS_ID_TOKEN_REQUEST_URL and ' +
        'ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set. Give the job (or the workflow) ' +
        '`permissions: id-token: write`.',
    );
  }
  checkedUrl(requestUrl, 'ACTIONS_ID_TOKEN_REQUEST_URL', true);
  return { requestUrl, requestToken };
}

/** The runner's request URL with the audience added (it already carries a query). */
function audienceUrl(requestUrl, subjectAudience) {
  const sep = requestUrl.includes('?') ? '&' : '?';
  return `${requestUrl}${sep}audience=${encodeURIComponent(subjectAudience)}`;
}

async function fetchOidcToken(oidc, subjectAudience) {
  const answer = await request(
    audienceUrl(oidc.requestUrl, subjectAudience),
    { headers: { Authorization: `Bearer ${oidc.requestToken}`, Accept: 'application/json', 'User-Agent': USER_AGENT } },
    'the runner\'s OIDC endpoint',
  );
  let value;
  try {
    value = JSON.parse(answer.text).value;
  } catch {
    value = undefined;
  }
  if (answer.status !== 200 || typeof value !== 'string' || !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){2}$/.test(value)) {
    // The body is not printed: it may hold a token.
    throw new ActionError(`the runner's OIDC endpoint did not return a token (HTTP ${answer.status})`);
  }
  addMask(value);
  return value;
}

/**
 * Ferry's fixed error code and description, printable ASCII only, and never one that
 * quotes a SECRET or any part of one, nor anything token-shaped (a server that echoes
 * input); nothing else of the body.
 */
function ferryError(answer, secrets) {
  let body = {};
  try {
    body = JSON.parse(answer.text) || {};
  } catch {
    body = {};
  }
  // A whole secret, a piece of one (16 characters of it), or anything token-shaped (a
  // run of 16 base64url characters: Ferry's own descriptions are plain words).
  const quotes = (text) =>
    /[A-Za-z0-9_-]{16,}/.test(text) ||
    secrets.some((secret) => {
      for (let i = 0; i + 16 <= secret.length; i += 1) {
        if (text.includes(secret.slice(i, i + 16))) return true;
      }
      return secret.length > 0 && secret.length < 16 && text.includes(secret);
    });
  const code =
    typeof body.error === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(body.error) && !quotes(body.error)
      ? body.error
      : null;
  const description =
    typeof body.error_description === 'string' && /^[\x20-\x7E]{1,300}$/.test(body.error_description) &&
    !quotes(body.error_description)
      ? body.error_description
      : null;
  let message = `Ferry refused the exchange (HTTP ${answer.status})`;
  if (code) {
    message += `: ${code}`;
    if (description) {
      message += ` (${description})`;
    }
  }
  return new ActionError(message);
}

async function exchange(inputs, oidc, subjectToken) {
  const form = new URLSearchParams({
    grant_type: GRANT_TYPE,
    subject_token: subjectToken,
    subject_token_type: JWT_TYPE,
    audience: inputs.audience,
  });
  if (inputs.scope) {
    form.set('scope', inputs.scope);
  }
  if (inputs.requestedTokenType) {
    form.set('requested_token_type', inputs.requestedTokenType);
  }
  const answer = await request(
    `${inputs.url}/token`,
    {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json', 'User-Agent': USER_AGENT },
      body: form.toString(),
    },
    'Ferry',
  );
  if (answer.status !== 200) {
    throw ferryError(answer, [subjectToken, oidc.requestToken]);
  }
  let body;
  try {
    body = JSON.parse(answer.text);
  } catch {
    body = null;
  }
  if (!body || typeof body.access_token !== 'string' || !body.access_token || /[\r\n]/.test(body.access_token)) {
    throw new ActionError('Ferry answered 200 without an access token');
  }
  addMask(body.access_token);
  for (const other of ['refresh_token', 'id_token']) {
    if (typeof body[other] === 'string') {
      addMask(body[other]);
    }
  }
  return body;
}

/**
 * A Google external_account credential whose source is the runner's OIDC endpoint, as
 * google-github-actions/auth writes it (the same shape as `ferry cred-config`): the
 * libraries fetch a fresh OIDC token at each refresh. Written 0600 under RUNNER_TEMP.
 */
function writeCredentialsFile(inputs, oidc) {
  const dir = process.env.RUNNER_TEMP;
  if (!dir) {
    throw new ActionError('RUNNER_TEMP is not set: run this action on a GitHub Actions runner');
  }
  const credential = {
    type: 'external_account',
    audience: inputs.audience,
    subject_token_type: JWT_TYPE,
    token_url: `${inputs.url}/token`,
    credential_source: {
      url: audienceUrl(oidc.requestUrl, inputs.subjectAudience),
      headers: { Authorization: `Bearer ${oidc.requestToken}` },
      format: { type: 'json', subject_token_field_name: 'value' },
    },
  };
  const file = path.join(dir, `ferry-credentials-${crypto.randomBytes(12).toString('hex')}.json`);
  fs.writeFileSync(file, `${JSON.stringify(credential, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  return file;
}

async function main() {
  // 1. Mask the request token before anything else can print.
  addMask(process.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN);
  const inputs = readInputs();
  const oidc = runnerOidc();
  // 2. The OIDC token is masked inside fetchOidcToken, 3. the issued token inside exchange.
  const subjectToken = await fetchOidcToken(oidc, inputs.subjectAudience);
  const issued = await exchange(inputs, oidc, subjectToken);

  setOutput('access-token', issued.access_token);
  setOutput('expires-in', Number.isInteger(issued.expires_in) ? String(issued.expires_in) : '');
  if (inputs.exportEnvVar) {
    exportVariable(inputs.exportEnvVar, issued.access_token);
  }
  if (inputs.credentialsFile) {
    const file = writeCredentialsFile(inputs, oidc);
    saveState('credentials-file-path', file); // post.js removes it when the job ends
    exportVariable('GOOGLE_APPLICATION_CREDENTIALS', file);
    setOutput('credentials-file-path', file);
    info(`Wrote a Google external_account credential file to ${file} (GOOGLE_APPLICATION_CREDENTIALS)`);
  }
  const lifetime = Number.isInteger(issued.expires_in) ? `, valid ${issued.expires_in} s` : '';
  info(`Ferry issued a token for ${inputs.audience}${lifetime}`);
}

main().catch((e) => {
  // Only our own messages are printed; anything unexpected is named by its kind alone.
  error(e instanceof ActionError ? e.message : `the action failed unexpectedly (${e && e.name})`);
  process.exitCode = 1;
});
