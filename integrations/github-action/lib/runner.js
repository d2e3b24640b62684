// The runner side of the action: inputs from INPUT_* variables, workflow commands on
// standard output (::add-mask::, ::error::), and the GITHUB_OUTPUT / GITHUB_ENV files.
// Written against Node built-ins only (and only APIs Node 20 has), the way
// @actions/core does it, so the action needs no install step.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');

/** A failure the action reports as its one error line; the message is ours, never input. */
class ActionError extends Error {}

/** The runner turns an input `foo-bar` into INPUT_FOO-BAR (spaces become `_`). */
function input(name) {
  const value = process.env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`];
  return (value ?? '').trim();
}

/** Workflow command data escaping (the runner's own rule). */
function escapeData(s) {
  return String(s).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/** Tells the runner to hide VALUE in every later log line. */
function addMask(value) {
  if (value) {
    process.stdout.write(`::add-mask::${escapeData(value)}${os.EOL}`);
  }
}

function info(message) {
  process.stdout.write(`${escapeData(message)}${os.EOL}`);
}

function error(message) {
  process.stdout.write(`::error::${escapeData(message)}${os.EOL}`);
}

/** name<<delimiter / value / delimiter, as @actions/core writes GITHUB_OUTPUT and GITHUB_ENV. */
function appendFileCommand(variable, name, value) {
  const file = process.env[variable];
  if (!file) {
    throw new ActionError(`${variable} is not set: run this action on a GitHub Actions runner`);
  }
  const text = String(value);
  const delimiter = `ghadelimiter_${crypto.randomUUID()}`;
  if (name.includes(delimiter) || text.includes(delimiter) || /[\r\n]/.test(name)) {
    throw new ActionError(`refusing to write ${variable}: unexpected characters`);
  }
  fs.appendFileSync(file, `${name}<<${delimiter}${os.EOL}${text}${os.EOL}${delimiter}${os.EOL}`);
}

function setOutput(name, value) {
  appendFileCommand('GITHUB_OUTPUT', name, value);
}

function exportVariable(name, value) {
  appendFileCommand('GITHUB_ENV', name, value);
}

/** State the post step reads back as STATE_<name>. */
function saveState(name, value) {
  appendFileCommand('GITHUB_STATE', name, value);
}

module.exports = { ActionError, input, addMask, info, error, setOutput, exportVariable, saveState };
