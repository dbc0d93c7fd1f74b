// Twilio's segment calculator over the cases generate.py writes: JSON [{text, smart_encoding}]
// on stdin, JSON [{encoding, segments, ucs2}] on stdout. Run by generate.py; see its docstring.
const { SegmentedMessage } = require("sms-segments-calculator");

const chunks = [];
process.stdin.on("data", (chunk) => chunks.push(chunk));
process.stdin.on("end", () => {
  const cases = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const answers = cases.map(({ text, smart_encoding }) => {
    const message = new SegmentedMessage(text, "auto", smart_encoding);
    return {
      encoding: message.getEncodingName(),
      segments: message.segmentsCount,
      ucs2: [...new Set(message.getNonGsmCharacters())],
    };
  });
  process.stdout.write(JSON.stringify(answers));
});
