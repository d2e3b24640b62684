// Outbound HTTP for the action: https only (plain http to a loopback address alone), no
// redirects (a 307 would resend the subject token elsewhere), bounded bodies, a timeout,
// and a bounded number of retries on 429 and 503 that honours a capped Retry-After.
'use strict';

const { ActionError, info } = require('./runner');

/** Attempts per request, the first included. */
const MAX_ATTEMPTS = 4;
/** The longest Retry-After honoured, in seconds: a longer one is cut to this. */
const MAX_RETRY_AFTER = 60;
/** Backoff without Retry-After: 1 s, 2 s, 4 s (plus up to a quarter of jitter). */
const BACKOFF_BASE_MS = 1000;
const TIMEOUT_MS = 30000;
const MAX_BODY = 64 * 1024;

/** Only a literal loopback address may be reached over plain http. */
function isLoopback(hostname) {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

/**
 * Parses URL (what names it in errors: WHAT) and refuses anything that is not https, or
 * http to loopback; user information, query and fragment are refused where ALLOW_QUERY
 * is false.
 */
function checkedUrl(raw, what, allowQuery) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    throw new ActionError(`${what} is not a URL`);
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
    throw new ActionError(`${what} must use https (plain http is allowed only to a loopback address)`);
  }
  if (url.username || url.password) {
    throw new ActionError(`${what} must not carry user information`);
  }
  if (!allowQuery && (url.search || url.hash)) {
    throw new ActionError(`${what} must not carry a query or a fragment`);
  }
  return url;
}

/** Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), capped. */
function retryAfterSeconds(header, now = Date.now()) {
  if (header == null) {
    return null;
  }
  const h = header.trim();
  let seconds;
  if (/^\d+$/.test(h)) {
    seconds = Number(h);
  } else {
    const at = Date.parse(h);
    if (Number.isNaN(at)) {
      return null;
    }
    seconds = Math.max(0, Math.ceil((at - now) / 1000));
  }
  return Math.min(seconds, MAX_RETRY_AFTER);
}

function backoffSeconds(attempt) {
  const base = (BACKOFF_BASE_MS * 2 ** (attempt - 1)) / 1000;
  return base + Math.random() * base * 0.25;
}

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

/** The body of RESPONSE as text, refused past MAX_BODY bytes. */
async function boundedText(response) {
  const declared = Number(response.headers.get('content-length'));
  if (declared > MAX_BODY) {
    throw new ActionError('the response is too large');
  }
  if (!response.body) {
    return '';
  }
  const reader = response.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      break;
    }
    size += value.length;
    if (size > MAX_BODY) {
      await reader.cancel();
      throw new ActionError('the response is too large');
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Sends the request (fetch OPTIONS) to URL, retrying on 429 and 503 and on connection
 * failures, at most MAX_ATTEMPTS times. WHAT names the server in log lines. Returns
 * { status, text, contentType } of the last answer.
 */
async function request(url, options, what) {
  for (let attempt = 1; ; attempt++) {
    let response;
    let failure = null;
    try {
      response = await fetch(url, { ...options, redirect: 'manual', signal: AbortSignal.timeout(TIMEOUT_MS) });
    } catch {
      // The error may quote the request; only its kind is reported.
      failure = 'could not be reached';
    }
    const retriable = failure !== null || response.status === 429 || response.status === 503;
    if (!retriable || attempt >= MAX_ATTEMPTS) {
      if (failure !== null) {
        throw new ActionError(`${what} ${failure} (${attempt} attempts)`);
      }
      if (response.status >= 300 && response.status < 400) {
        throw new ActionError(`${what} answered a redirect (HTTP ${response.status}), which is not followed`);
      }
      const text = await boundedText(response);
      return { status: response.status, text, contentType: response.headers.get('content-type') || '', attempts: attempt };
    }
    const fromHeader = failure === null ? retryAfterSeconds(response.headers.get('retry-after')) : null;
    const wait = fromHeader ?? backoffSeconds(attempt);
    if (response) {
      await response.body?.cancel().catch(() => {});
    }
    const why = failure ?? `answered HTTP ${response.status}`;
    info(`${what} ${why} (attempt ${attempt} of ${MAX_ATTEMPTS}); retrying in ${Math.round(wait * 10) / 10} s`);
    await sleep(wait);
  }
}

module.exports = { checkedUrl, isLoopback, request, retryAfterSeconds, MAX_ATTEMPTS, MAX_RETRY_AFTER };
