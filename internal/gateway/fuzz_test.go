package gateway

import (
	"errors"
	"net/url"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/protocol"
)

// FuzzParseClientFrame is the server's client-message parser under
// arbitrary input, in both encodings (bin: pixelflow.v1.bin): any input
// yields either a ping or a frameError with a close code the protocol
// documents, never a panic; and a binary ping is exactly the one byte.
func FuzzParseClientFrame(f *testing.F) {
	seeds := []struct {
		mt   int
		data string
	}{
		{websocket.BinaryMessage, "\x05"},
		{websocket.BinaryMessage, "\x05\x00"},
		{websocket.BinaryMessage, "\x04"},
		{websocket.BinaryMessage, ""},
		{websocket.TextMessage, `{"type":"ping"}`},
		{websocket.TextMessage, ` {"type" : "ping"} `},
		{websocket.TextMessage, `{"type":"ping","extra":1}`},
		{websocket.TextMessage, `{"type":"pong"}`},
		{websocket.TextMessage, `{"type":null}`},
		{websocket.TextMessage, `[]`},
		{websocket.TextMessage, `"ping"`},
		{websocket.TextMessage, `{"type":"ping"}{}`},
		{websocket.TextMessage, `{"type":"subscribe","regions":[0,1,64]}`},
		{websocket.TextMessage, `{"type":"subscribe","all":true}`},
		{websocket.TextMessage, `{"type":"unsubscribe","regions":[3]}`},
		{websocket.TextMessage, `{"type":"unsubscribe","all":true}`},
		{websocket.TextMessage, `{"type":"subscribe","regions":[-1]}`},
		{websocket.TextMessage, `{"type":"subscribe","regions":"1"}`},
		{websocket.TextMessage, `{"type":"subscribe"}`},
		{websocket.TextMessage, "\xff\xfe"},
		{websocket.TextMessage, ""},
		{websocket.BinaryMessage, "\x00\x01"},
		{websocket.PingMessage, ""},
	}
	for _, s := range seeds {
		f.Add(false, s.mt, []byte(s.data))
		f.Add(true, s.mt, []byte(s.data))
	}
	allowed := map[int]bool{
		websocket.CloseUnsupportedData:         true,
		websocket.CloseInvalidFramePayloadData: true,
		websocket.ClosePolicyViolation:         true,
		websocket.CloseMessageTooBig:           true,
		websocket.CloseProtocolError:           true,
	}
	f.Fuzz(func(t *testing.T, bin bool, mt int, data []byte) {
		var format wireFormat
		if bin {
			format = binaryFormat
		}
		fr, err := parseClientFrame(format, mt, data)
		if err == nil {
			ok := fr.Type == protocol.TypePing ||
				!bin && (fr.Type == protocol.TypeSubscribe || fr.Type == protocol.TypeUnsubscribe) && (fr.All || len(fr.Regions) > 0)
			if !ok || len(data) > maxClientFrame {
				t.Fatalf("accepted %d %q as %+v", mt, data, fr)
			}
			if fr.Type != protocol.TypePing {
				return
			}
			if bin && (mt != websocket.BinaryMessage || string(data) != "\x05") || !bin && mt != websocket.TextMessage {
				t.Fatalf("bin=%v accepted %d %q as a ping", bin, mt, data)
			}
			return
		}
		var fe *frameError
		if !errors.As(err, &fe) || !allowed[fe.Code] || fe.Reason == "" {
			t.Fatalf("bad refusal %v", err)
		}
		if len(websocket.FormatCloseMessage(fe.Code, fe.Reason)) > 125 {
			t.Fatalf("close reason too long for a control frame: %q", fe.Reason)
		}
	})
}

// FuzzParsePosition: since values either parse to a position that prints
// back to itself and is safe to echo, or are refused as invalid.
func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"e1:0", "e1:42", "abc_DEF-9:18446744073709551615", "e1:18446744073709551616",
		":1", "e1:", "e1:-1", "e1:+1", "e:1:2", "é:1", "e1:0x10", "", "e1:1\n", "a:01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pos, ok, err := parseSince(url.Values{"since": {s}})
		if err != nil {
			if ok || canvas.ErrorCode(err) != canvas.EInvalid {
				t.Fatalf("%q: ok=%v err=%v", s, ok, err)
			}
			return
		}
		if !ok {
			t.Fatalf("%q: no position and no error", s)
		}
		if canvas.ValidateEpoch(pos.Epoch) != nil {
			t.Fatalf("%q: accepted epoch %q", s, pos.Epoch)
		}
		back, err := canvas.ParsePosition(pos.String())
		if err != nil || back != pos {
			t.Fatalf("%q → %v → %v %v", s, pos, back, err)
		}
	})
}

func TestParseSinceAbsent(t *testing.T) {
	if _, ok, err := parseSince(url.Values{}); ok || err != nil {
		t.Fatalf("absent since: %v %v", ok, err)
	}
	if _, _, err := parseSince(url.Values{"since": {"e:1", "e:2"}}); err == nil {
		t.Fatal("two since values accepted")
	}
}
