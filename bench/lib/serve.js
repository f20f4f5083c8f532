'use strict';
// The start and the end of a bench server that a benchmark spawns (bench/predict-nimify-server.js,
// bench/predict-ort-server.js): listen on 127.0.0.1, print the ready line the runner waits for
// (bench/lib/children.js), close on SIGTERM / SIGINT, and exit 1 on a start-up error (which the
// runner reports as "exited before it was ready", with the error among the last lines).
// bench/plain-server.js and bench/echo-server.js do not use it: they are written as a user would,
// standalone.

/** Listens on 127.0.0.1:`port`, prints `readyLine(address)`; SIGTERM / SIGINT close the app. */
async function listen(app, port, readyLine) {
  const address = await app.listen({ port: Number(port), host: '127.0.0.1' });
  console.log(readyLine(address));
  const stop = () => {
    app.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return address;
}

/** Runs the server's async main(); an error is printed and the process exits 1. */
function runServer(main) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

module.exports = { listen, runServer };
