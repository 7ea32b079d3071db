// The pixelflow.v1.bin decoder (docs/protocol.md, "The binary
// subprotocol"): the page speaks it because a pixel costs it about 8 bytes
// instead of JSON's 60. decode turns one binary message into the object its
// JSON twin parses to, and throws on anything the spec does not allow
// (the Go codec refuses the same messages; e2e/browser_test.go runs this
// file against the test vectors of internal/protocol/testdata).
//
// Integers are read with Number arithmetic, exact up to 2^53 - 1: a
// larger sequence or version (which no canvas reaches) is refused rather
// than rounded.
export const SUBPROTOCOL = 'pixelflow.v1.bin';
export const PING = new Uint8Array([0x05]);

const HELLO = 0x01, EVENTS = 0x02, RESYNC = 0x03, PONG = 0x04;
const text = new TextDecoder();

// decode parses one binary message (a Uint8Array).
export function decode(b) {
  let i = 1;
  const fail = (why) => { throw new Error('binary: ' + why); };
  const byte = () => { if (i >= b.length) fail('truncated'); return b[i++]; };
  const uvarint = () => {
    let v = 0, scale = 1;
    for (let n = 0; ; n++) {
      if (i >= b.length) fail('truncated varint');
      const c = b[i++];
      v += (c & 0x7f) * scale;
      if (c < 0x80) {
        if (n > 0 && c === 0) fail('varint not minimally encoded');
        if (v > Number.MAX_SAFE_INTEGER) fail('varint above 2^53 - 1');
        return v;
      }
      scale *= 128;
      if (n >= 8) fail('varint above 2^53 - 1');
    }
  };
  const str = () => {
    const n = byte();
    if (i + n > b.length) fail('truncated string');
    const s = text.decode(b.subarray(i, i + n));
    i += n;
    return s;
  };
  if (b.length === 0) fail('empty message');
  let f;
  switch (b[0]) {
    case HELLO: {
      const flags = byte();
      if (flags & ~1) fail('undefined hello flag');
      const seq = uvarint();
      f = { type: 'hello', epoch: str(), seq, resumed: (flags & 1) === 1 };
      break;
    }
    case RESYNC: {
      const seq = uvarint(), epoch = str();
      f = { type: 'resync', reason: str(), epoch, seq };
      break;
    }
    case PONG:
      f = { type: 'pong' };
      break;
    case EVENTS: {
      let seq = uvarint();
      if (seq === 0) fail('first seq 0');
      const events = [];
      while (i < b.length) {
        const head = uvarint();
        if (head === 1) events.push({ seq, kind: 'canary' });
        else if (head % 2 === 1) fail('reserved event head');
        else {
          const gx = head / 2, gy = uvarint();
          if (i + 3 > b.length) fail('truncated colour');
          const rgb = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
          i += 3;
          const color = '#' + rgb.toString(16).toUpperCase().padStart(6, '0');
          events.push({ seq, gx, gy, color, version: uvarint() });
        }
        seq++;
      }
      if (events.length === 0) fail('no event');
      f = { type: 'events', events };
      break;
    }
    default:
      fail('unknown message type ' + b[0]);
  }
  if (i !== b.length) fail('trailing bytes');
  return f;
}
