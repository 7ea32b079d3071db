package protocol_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/protocol/protocoltest"
)

// Each valid vector decodes to its JSON twin, and the twin encodes to
// exactly the vector's bytes.
func TestBinaryVectors(t *testing.T) {
	for _, v := range protocoltest.Load(t).Valid {
		raw, err := hex.DecodeString(v.Hex)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		var want protocol.ServerFrame
		if err := json.Unmarshal(v.Frame, &want); err != nil {
			t.Fatalf("%s: frame: %v", v.Name, err)
		}
		got, err := protocol.DecodeBinary(raw)
		if err != nil {
			t.Errorf("%s: decode %s: %v", v.Name, v.Hex, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %s decoded to\n %+v\nwant %+v", v.Name, v.Hex, got, want)
		}
		enc, err := protocol.EncodeBinary(want)
		if err != nil {
			t.Errorf("%s: encode: %v", v.Name, err)
			continue
		}
		if hex.EncodeToString(enc) != v.Hex {
			t.Errorf("%s: encoded to %x, want %s", v.Name, enc, v.Hex)
		}
	}
}

// Each invalid vector is refused with an error that names the problem.
func TestBinaryInvalidVectors(t *testing.T) {
	for _, v := range protocoltest.Load(t).Invalid {
		raw, err := hex.DecodeString(v.Hex)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		f, err := protocol.DecodeBinary(raw)
		if err == nil {
			t.Errorf("%s: %s accepted as %+v", v.Name, v.Hex, f)
		} else if !strings.HasPrefix(err.Error(), "binary") {
			t.Errorf("%s: error %q does not say it is the binary decoder's", v.Name, err)
		}
	}
}

// The protocol document quotes every vector, so client authors read the
// bytes the tests hold.
func TestProtocolDocQuotesTheVectors(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	v := protocoltest.Load(t)
	for _, x := range v.Valid {
		if !bytes.Contains(doc, []byte(spaced(x.Hex))) {
			t.Errorf("docs/protocol.md does not quote vector %q as %s", x.Name, spaced(x.Hex))
		}
	}
	for _, x := range v.Invalid {
		if x.Hex != "" && !bytes.Contains(doc, []byte(spaced(x.Hex))) {
			t.Errorf("docs/protocol.md does not quote invalid vector %q as %s", x.Name, spaced(x.Hex))
		}
	}
}

// spaced writes hex as the document does: bytes separated by spaces.
func spaced(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// Frames the encoder refuses rather than encode wrongly.
func TestEncodeBinaryRefuses(t *testing.T) {
	for name, f := range map[string]protocol.ServerFrame{
		"no events":    {Type: protocol.TypeEvents},
		"seq 0":        {Type: protocol.TypeEvents, Events: []protocol.Event{{Seq: 0, Color: "#000000"}}},
		"gap":          {Type: protocol.TypeEvents, Events: []protocol.Event{{Seq: 1, Color: "#000000"}, {Seq: 3, Color: "#000000"}}},
		"bad colour":   {Type: protocol.TypeEvents, Events: []protocol.Event{{Seq: 1, Color: "red"}}},
		"hex sign":     {Type: protocol.TypeEvents, Events: []protocol.Event{{Seq: 1, Color: "#+12345"}}},
		"unknown type": {Type: "nope"},
	} {
		if b, err := protocol.EncodeBinary(f); err == nil {
			t.Errorf("%s: encoded as %x", name, b)
		}
	}
}

// FuzzDecodeBinary is the client decoder under arbitrary input: it never
// panics, and whatever it accepts is canonical — encoding the decoded frame
// gives back exactly the input, so no two encodings mean the same frame.
func FuzzDecodeBinary(f *testing.F) {
	v := protocoltest.Load(f)
	for _, x := range v.Valid {
		b, _ := hex.DecodeString(x.Hex)
		f.Add(b)
	}
	for _, x := range v.Invalid {
		b, _ := hex.DecodeString(x.Hex)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := protocol.DecodeBinary(b)
		if err != nil {
			if fr.Type != "" || fr.Events != nil {
				t.Fatalf("%x: error %v with a frame %+v", b, err, fr)
			}
			return
		}
		back, err := protocol.EncodeBinary(fr)
		if err != nil {
			t.Fatalf("%x decoded to %+v, which does not encode: %v", b, fr, err)
		}
		if !bytes.Equal(back, b) {
			t.Fatalf("%x decoded to %+v, which encodes to %x", b, fr, back)
		}
	})
}
