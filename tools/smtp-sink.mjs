// A local SMTP server that accepts every message and writes each, whole, as one JSON line
// ({from, to, data}) to a file: the notification email test sends real SMTP to it.
// Usage: node smtp-sink.mjs <port> <file>   (prints "listening" once it accepts connections)
import { SMTPServer } from "smtp-server";
import fs from "node:fs";

const [port, file] = process.argv.slice(2);
const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ["STARTTLS"],
  onData(stream, session, done) {
    const chunks = [];
    stream.on("data", (c) => chunks.push(c));
    stream.on("end", () => {
      const message = {
        from: session.envelope.mailFrom && session.envelope.mailFrom.address,
        to: session.envelope.rcptTo.map((r) => r.address),
        data: Buffer.concat(chunks).toString("utf8"),
      };
      fs.appendFileSync(file, JSON.stringify(message) + "\n");
      done();
    });
  },
});
server.listen(Number(port), "127.0.0.1", () => console.log("listening"));
