// The action's post step: removes the credential file the main step wrote (it holds the
// job's OIDC request token), as google-github-actions/auth does. The runner hands the
// main step's saved state over as STATE_* variables; only a file of ours directly under
// RUNNER_TEMP is removed, whatever the state says.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const { error, info } = require('./lib/runner');

function main() {
  const file = process.env['STATE_credentials-file-path'];
  const dir = process.env.RUNNER_TEMP;
  if (!file || !dir) {
    return;
  }
  const ours = /^ferry-credentials-[0-9a-f]{24}\.json$/.test(path.basename(file));
  if (!ours || path.dirname(path.resolve(file)) !== path.resolve(dir)) {
    error('not removing a credential file outside RUNNER_TEMP');
    process.exitCode = 1;
    return;
  }
  fs.rmSync(file, { force: true });
  info(`Removed the credential file ${file}`);
}

main();
