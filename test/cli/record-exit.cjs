// Preloaded (NODE_OPTIONS=--require) into every node process of an `npx nimify serve` test run:
// the nimify process (argv[1] ends in .bin/nimify) writes its pid and exit code to NIMIFY_TEST_EXIT_FILE,
// since it is npx's grandchild and the test cannot wait() for it (and its pid at start, so a failed test can kill it).
'use strict';
if (/[\\/]\.bin[\\/]nimify$/.test(process.argv[1] || '') && process.env.NIMIFY_TEST_EXIT_FILE) {
  require('fs').writeFileSync(`${process.env.NIMIFY_TEST_EXIT_FILE}.pid`, String(process.pid));
  process.on('exit', (code) => require('fs').writeFileSync(process.env.NIMIFY_TEST_EXIT_FILE, JSON.stringify({ pid: process.pid, code })));
}
